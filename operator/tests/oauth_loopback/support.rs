//! Test support: a sandbox AS on 127.0.0.1 with its discovery document fetched through the
//! operator's [`Discovery`]; a TPP identity made by `tpp_operator::identity` (PS256 signing key,
//! self-signed P-256 transport certificate); an [`AssertionMinter`] over identity's client
//! assertion; and the [`Harness`] that collects every secret and every
//! error of a test for the redaction check in [`Harness::finish`].

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use sandbox_as::{self as sandbox, RunningSandbox, SandboxConfig};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value, json};
use tpp_operator::identity::assertion::{
    AssertionPolicy, AssertionTarget, Audience, client_assertion,
};
use tpp_operator::identity::cert::{CertificateProfile, IssuedCertificate, self_signed};
use tpp_operator::identity::jwks::{PublishedAlg, PublishedKey, build_jwks};
use tpp_operator::identity::{KeyAlgorithm, KeyUse, PrivateKey, Signer};
use tpp_operator::oauth::{
    AccessToken, AsClient, AsRequest, AssertionMinter, AudiencePolicy, ClientAuth, ClientAuthn,
    ClientIdentity, Clock as _, Discovery, MintError, OauthError, ProviderMetadata, RequestBody,
    Step, SystemClock, TransportConfig,
};

use super::capture;

/// The initial access token of sandboxes that require one.
pub const INITIAL_ACCESS_TOKEN: &str = "iat-loopback-7c1e2b0a-secret";
/// The scope every test client registers and asks for.
pub const SCOPE: &str = "accounts";

/// Every secret a test handled and every error it saw, checked against each other and against
/// the captured log lines in [`Harness::finish`].
#[derive(Default)]
pub struct Recorder {
    secrets: Mutex<Vec<String>>,
    texts: Mutex<Vec<String>>,
}

impl Recorder {
    /// Remembers a secret value (token, RAT, assertion, PEM line).
    pub fn secret(&self, value: &str) {
        if value.len() >= 8 {
            self.secrets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(value.to_owned());
        }
    }

    /// Remembers every base64 line of a PEM private key.
    pub fn pem(&self, pem: &str) {
        pem.lines()
            .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
            .for_each(|l| self.secret(l.trim()));
    }

    /// Remembers an error's `Display`, `Debug` and source chain.
    pub fn error(&self, err: &OauthError) {
        let mut text = format!("{err} | {err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            text.push_str(&format!(" | {s} | {s:?}"));
            source = s.source();
        }
        self.text(text);
    }

    /// Remembers any text the operator would show (e.g. a `Debug` of a secret-holding value).
    pub fn text(&self, text: String) {
        self.texts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text);
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn texts(&self) -> Vec<String> {
        self.texts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A sandbox, its discovery document as the operator read it, and the test's recorder.
pub struct Harness {
    pub sandbox: RunningSandbox,
    pub transport: TransportConfig,
    pub meta: Arc<ProviderMetadata>,
    pub rec: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a sandbox (`tweak` adjusts its config) and reads its discovery document without a
    /// client certificate, as the operator does.
    pub async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> anyhow::Result<Self> {
        capture::install();
        let dir = tempfile::tempdir()?;
        let mut cfg = SandboxConfig::new(dir.path());
        tweak(&mut cfg);
        let sandbox = sandbox::start(cfg).await?;
        let mut transport = TransportConfig::new(sandbox.ca_pem().as_bytes().to_vec());
        transport.connect_timeout = Duration::from_secs(5);
        transport.timeout = Duration::from_secs(10);
        let plain = AsClient::new(&transport, None)?;
        let meta = Discovery::default()
            .get(&plain, sandbox.issuer(), None)
            .await
            .context("discovery")?;
        let rec = Arc::new(Recorder::default());
        rec.secret(INITIAL_ACCESS_TOKEN);
        Ok(Self {
            sandbox,
            transport,
            meta,
            rec,
            _dir: dir,
        })
    }

    /// The advertised registration endpoint.
    pub fn registration_endpoint(&self) -> &str {
        self.meta.registration_endpoint.as_deref().unwrap_or("")
    }

    /// The RFC 7592 origins check input.
    pub fn target(&self) -> tpp_operator::oauth::ManagementTarget<'_> {
        tpp_operator::oauth::ManagementTarget {
            registration_endpoint: self.registration_endpoint(),
            issuer: &self.meta.issuer,
        }
    }

    /// The initial access token as the operator holds it.
    pub fn initial_access_token(&self) -> SecretString {
        SecretString::from(INITIAL_ACCESS_TOKEN)
    }

    /// Unwraps the error of `result`, recording it for the redaction check.
    pub fn expect_err<T>(&self, result: Result<T, OauthError>) -> anyhow::Result<OauthError> {
        match result {
            Ok(_) => anyhow::bail!("the call succeeded but was expected to fail"),
            Err(err) => {
                self.rec.error(&err);
                Ok(err)
            }
        }
    }

    /// Unwraps a success, recording the error (then failing) otherwise.
    pub fn expect_ok<T>(&self, result: Result<T, OauthError>) -> anyhow::Result<T> {
        result.map_err(|err| {
            self.rec.error(&err);
            anyhow::anyhow!("unexpected failure: {err} ({})", err.reason())
        })
    }

    /// `client_credentials` for [`SCOPE`] through the operator's client.
    pub async fn token(
        &self,
        client: &AsClient,
        authn: &ClientAuthn,
    ) -> Result<AccessToken, OauthError> {
        let result =
            tpp_operator::oauth::token::client_credentials(client, &self.meta, authn, SCOPE).await;
        if let Ok(token) = &result {
            self.rec.secret(token.access_token.expose_secret());
            self.rec.text(format!("{token:?}"));
        }
        result
    }

    /// Asserts that the sandbox's admin introspection (`POST /_sandbox/introspect`, over TLS)
    /// says `token` is active and bound to the certificate with thumbprint `x5t_s256`.
    pub async fn assert_bound(&self, token: &AccessToken, x5t_s256: &str) -> anyhow::Result<()> {
        let url = url::Url::parse(&format!("{}/introspect", self.sandbox.admin_url()))?;
        let body = json!({"token": token.access_token.expose_secret()}).to_string();
        let admin = AsClient::new(&self.transport, None)?;
        let response = self.expect_ok(
            admin
                .send(
                    Step::Introspection,
                    AsRequest::new(reqwest::Method::POST, url)
                        .body("application/json", RequestBody::Secret(body.into())),
                )
                .await,
        )?;
        anyhow::ensure!(
            response.status == 200,
            "admin introspection answered {}",
            response.status
        );
        let view: Value = serde_json::from_slice(&response.body)?;
        assert_eq!(view["active"], true, "token is active");
        assert_eq!(view["cnf"]["x5t#S256"], x5t_s256, "token bound to the cert");
        assert_eq!(token.bound_x5t_s256.as_deref(), Some(x5t_s256));
        Ok(())
    }

    /// The redaction check: no recorded error or text, and no log line captured so far (this
    /// test's lines included, as they were written before this call), contains a secret this
    /// test handled. Also checks that this test's own AS calls were captured, so the check
    /// cannot pass vacuously.
    pub fn finish(self) {
        let secrets = self.rec.secrets();
        let lines = capture::lines();
        let port = format!(":{}", self.sandbox.port());
        assert!(
            lines
                .iter()
                .any(|l| l.contains("as call") && l.contains(&port)),
            "this test's AS calls were captured"
        );
        for text in self.rec.texts().iter().chain(lines.iter()) {
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "a secret leaked into an error or log line: {}",
                    text.replace(secret.as_str(), "<THE SECRET>")
                );
            }
        }
    }
}

/// A TPP's identity material, all made by `tpp_operator::identity`.
pub struct Tpp {
    pub signing_key: PrivateKey,
    pub signer: Signer,
    pub cert: IssuedCertificate,
    cert_key_pem: SecretString,
}

impl Tpp {
    /// A PS256 signing key and a self-signed transport certificate for `cn`.
    pub fn generate(cn: &str, rec: &Recorder) -> anyhow::Result<Self> {
        let signing_key = PrivateKey::generate(KeyAlgorithm::Rsa2048)?;
        let signer = signing_key.signer()?;
        let cert_key = PrivateKey::generate(KeyAlgorithm::EcP256)?;
        let profile = CertificateProfile::new(
            &format!("CN={cn},O=Example TPP,C=GB"),
            Duration::from_secs(30 * 24 * 3600),
        )?;
        let cert = self_signed(&cert_key, &profile, SystemClock.now())?;
        let cert_key_pem = cert_key.to_pkcs8_pem();
        rec.pem(signing_key.to_pkcs8_pem().expose_secret());
        rec.pem(cert_key_pem.expose_secret());
        Ok(Self {
            signing_key,
            signer,
            cert,
            cert_key_pem,
        })
    }

    /// The public JWK set to register (one PS256 signing key).
    pub fn jwks(&self) -> anyhow::Result<Value> {
        let set = build_jwks([PublishedKey {
            jwk: self.signing_key.public_jwk(),
            key_use: KeyUse::Sig,
            alg: PublishedAlg::Ps256,
            certificate_chain: Vec::new(),
        }])?;
        Ok(serde_json::to_value(set)?)
    }

    /// The mTLS identity for the operator's transport.
    pub fn identity(&self) -> anyhow::Result<ClientIdentity> {
        Ok(ClientIdentity::from_pem(
            self.cert.pem.as_bytes(),
            self.cert_key_pem.clone(),
        )?)
    }

    /// `x5t#S256` of the transport certificate, as identity computed it.
    pub fn x5t(&self) -> &str {
        &self.cert.info.x5t_s256
    }

    /// An mTLS client of the harness's AS presenting this certificate.
    pub fn client(&self, h: &Harness) -> anyhow::Result<AsClient> {
        Ok(AsClient::new(&h.transport, Some(&self.identity()?))?)
    }

    /// RFC 7591 metadata for a `private_key_jwt` client of this TPP.
    pub fn metadata(&self) -> anyhow::Result<Map<String, Value>> {
        let value = json!({
            "client_name": "loopback tpp",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "PS256",
            "id_token_signed_response_alg": "PS256",
            "grant_types": ["client_credentials"],
            "scope": SCOPE,
            "redirect_uris": ["https://tpp.example/cb"],
            "tls_client_certificate_bound_access_tokens": true,
            "jwks": self.jwks()?,
        });
        value.as_object().cloned().context("metadata is an object")
    }

    /// `private_key_jwt` authentication of `client_id` with assertions from identity.
    pub fn authn(
        &self,
        client_id: &str,
        rec: &Arc<Recorder>,
        audience: AudiencePolicy,
    ) -> ClientAuthn {
        ClientAuthn {
            client_id: client_id.to_owned(),
            auth: ClientAuth::PrivateKeyJwt {
                minter: Arc::new(IdentityMinter::new(
                    self.signer.clone(),
                    client_id,
                    rec.clone(),
                )),
                audience,
            },
            within_jwks_propagation: false,
        }
    }
}

/// [`AssertionMinter`] over `tpp_operator::identity::assertion::client_assertion`: the oauth
/// layer resolves the audience (its [`AudiencePolicy`]), so identity receives it as a literal.
pub struct IdentityMinter {
    signer: Signer,
    client_id: String,
    rec: Arc<Recorder>,
}

impl IdentityMinter {
    pub fn new(signer: Signer, client_id: &str, rec: Arc<Recorder>) -> Self {
        Self {
            signer,
            client_id: client_id.to_owned(),
            rec,
        }
    }
}

impl AssertionMinter for IdentityMinter {
    fn mint(&self, audience: &str) -> Result<SecretString, MintError> {
        let policy = AssertionPolicy {
            audience: Audience::Literal(audience.to_owned()),
            ..AssertionPolicy::default()
        };
        let target = AssertionTarget {
            client_id: &self.client_id,
            issuer: audience,
            token_endpoint: audience,
        };
        let assertion = client_assertion(&self.signer, target, &policy, SystemClock.now())
            .map_err(|e| {
                MintError::permanent("could not sign the client assertion").with_source(e)
            })?;
        self.rec.secret(assertion.expose_secret());
        Ok(assertion)
    }
}

/// A minter that mints once and then hands out the same assertion (same `jti`) again.
pub struct ReplayingMinter {
    inner: IdentityMinter,
    first: Mutex<Option<SecretString>>,
}

impl ReplayingMinter {
    pub fn new(inner: IdentityMinter) -> Self {
        Self {
            inner,
            first: Mutex::new(None),
        }
    }
}

impl AssertionMinter for ReplayingMinter {
    fn mint(&self, audience: &str) -> Result<SecretString, MintError> {
        let mut first = self
            .first
            .lock()
            .map_err(|_| MintError::permanent("poisoned"))?;
        if let Some(assertion) = first.as_ref() {
            return Ok(assertion.clone());
        }
        let assertion = self.inner.mint(audience)?;
        *first = Some(assertion.clone());
        Ok(assertion)
    }
}
