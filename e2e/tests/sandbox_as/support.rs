//! Test support: start a sandbox in a temp dir, build mTLS reqwest clients (aws-lc-rs), make
//! PS256 keys and client assertions with josekit, register clients. Loopback only.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use e2e::sandbox::{self, RunningSandbox, SandboxConfig, pki::CertPair};
use josekit::{
    jwk::Jwk,
    jws::{JwsHeader, JwsSigner},
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject as _};
use serde_json::{Map, Value, json};

pub const IAT: &str = "initial-access-token-for-tests";

/// A running sandbox and the temp dir holding its state.
pub struct Sandbox {
    pub running: RunningSandbox,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Sandbox {
    type Target = RunningSandbox;
    fn deref(&self) -> &RunningSandbox {
        &self.running
    }
}

/// Starts a sandbox; `tweak` adjusts the default config (initial access token preset).
pub async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> anyhow::Result<Sandbox> {
    let dir = tempfile::tempdir()?;
    let mut cfg = SandboxConfig::new(dir.path());
    cfg.initial_access_token = Some(IAT.to_string().into());
    tweak(&mut cfg);
    let running = sandbox::start(cfg).await?;
    Ok(Sandbox { running, _dir: dir })
}

/// A rustls client config (aws-lc-rs) trusting `ca_pem`, presenting `cert` when given.
pub fn tls_config(ca_pem: &str, cert: Option<&CertPair>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match cert {
        Some(c) => builder.with_client_auth_cert(
            vec![c.cert_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone())),
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// A reqwest client over `config`, resolving localhost to 127.0.0.1:`port`.
pub fn http_from(config: rustls::ClientConfig, port: u16) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// A reqwest client trusting `ca_pem`, presenting `cert` when given.
pub fn http_with(
    ca_pem: &str,
    port: u16,
    cert: Option<&CertPair>,
) -> anyhow::Result<reqwest::Client> {
    http_from(tls_config(ca_pem, cert)?, port)
}

/// [`http_with`] for a sandbox.
pub fn http(sb: &RunningSandbox, cert: Option<&CertPair>) -> anyhow::Result<reqwest::Client> {
    http_with(sb.ca_pem(), sb.port(), cert)
}

/// A self-signed transport certificate.
pub fn transport_cert(cn: &str) -> anyhow::Result<CertPair> {
    sandbox::pki::self_signed_client(&[(rcgen::DnType::CommonName, cn)])
}

/// An RSA signing key with a `kid`.
pub struct SigningKey {
    pub kid: String,
    private: Jwk,
    public: Jwk,
}

impl SigningKey {
    pub fn generate(kid: &str) -> anyhow::Result<Self> {
        let pair = josekit::jws::PS256.generate_key_pair(2048)?;
        let mut private = strip_alg(&pair.to_jwk_key_pair())?;
        private.set_key_id(kid);
        let mut public = pair.to_jwk_public_key();
        public.set_key_id(kid);
        public.set_key_use("sig");
        Ok(Self {
            kid: kid.to_string(),
            private,
            public,
        })
    }

    /// The public JWK as JSON.
    pub fn public_jwk(&self) -> Value {
        Value::Object(self.public.as_ref().clone())
    }

    /// A JWK Set holding only this key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.public_jwk()]})
    }

    /// Signs `claims` with `alg` (PS256 or RS256) and this key's `kid`.
    pub fn sign_with(&self, alg: &str, claims: &Value) -> anyhow::Result<String> {
        let signer: Box<dyn JwsSigner> = match alg {
            "PS256" => Box::new(josekit::jws::PS256.signer_from_jwk(&self.private)?),
            "RS256" => Box::new(josekit::jws::RS256.signer_from_jwk(&self.private)?),
            other => anyhow::bail!("unsupported alg {other}"),
        };
        let mut header = JwsHeader::new();
        header.set_algorithm(alg);
        header.set_key_id(&self.kid);
        Ok(josekit::jws::serialize_compact(
            serde_json::to_vec(claims)?.as_slice(),
            &header,
            signer.as_ref(),
        )?)
    }

    /// Signs `claims` with PS256.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        self.sign_with("PS256", claims)
    }

    /// A client assertion for `client_id` with the given `aud`, `iat` offset (seconds from now,
    /// may be fractional) and lifetime.
    pub fn assertion(
        &self,
        client_id: &str,
        aud: &str,
        iat_offset: f64,
        lifetime: f64,
    ) -> anyhow::Result<String> {
        let iat = now() + iat_offset;
        self.sign(&json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": iat, "exp": iat + lifetime,
        }))
    }
}

fn strip_alg(jwk: &Jwk) -> anyhow::Result<Jwk> {
    let mut map: Map<String, Value> = jwk.as_ref().clone();
    map.remove("alg");
    Ok(Jwk::from_map(map)?)
}

/// Seconds since the epoch, fractional.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Registers a `private_key_jwt` client (RFC 7591); returns the 201 body.
pub async fn register_pkjwt(
    sb: &RunningSandbox,
    http: &reqwest::Client,
    keys: Value,
) -> anyhow::Result<Value> {
    register_pkjwt_with(sb, http, keys, json!({})).await
}

/// [`register_pkjwt`] with `extra` metadata merged over the defaults.
pub async fn register_pkjwt_with(
    sb: &RunningSandbox,
    http: &reqwest::Client,
    keys: Value,
    extra: Value,
) -> anyhow::Result<Value> {
    let mut body = json!({
        "client_name": "test client",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "PS256",
        "id_token_signed_response_alg": "PS256",
        "grant_types": ["client_credentials"],
        "scope": "accounts",
        "tls_client_certificate_bound_access_tokens": true,
        "jwks": keys,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let response = http
        .post(sb.registration_endpoint())
        .bearer_auth(IAT)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 201,
        "registration answered {}",
        response.status()
    );
    Ok(response.json().await?)
}

/// The `client_id` of a registration answer.
pub fn client_id(reg: &Value) -> anyhow::Result<String> {
    reg["client_id"]
        .as_str()
        .map(str::to_string)
        .context("client_id in answer")
}

/// POSTs a client_credentials request with `assertion`; returns status and JSON body.
pub async fn token_request(
    sb: &RunningSandbox,
    http: &reqwest::Client,
    client_id: &str,
    assertion: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = http
        .post(sb.token_endpoint())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", "accounts"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}
