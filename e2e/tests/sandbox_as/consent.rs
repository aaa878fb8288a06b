//! The consent flow: PAR (PS256 request object, PKCE S256) → `/auth` (auto-approve, 303 with
//! code, state, iss) → code exchange (single use, PKCE checked) → refresh.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use e2e::sandbox::pki::CertPair;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::*;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const REDIRECT: &str = "https://127.0.0.1:1/callback";

struct Consent<'a> {
    sb: &'a Sandbox,
    http: reqwest::Client,
    key: SigningKey,
    id: String,
}

impl<'a> Consent<'a> {
    async fn new(sb: &'a Sandbox, cert: &CertPair) -> anyhow::Result<Self> {
        let http = http(sb, Some(cert))?;
        let key = SigningKey::generate("k1")?;
        let extra = json!({
            "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
            "redirect_uris": [REDIRECT], "response_types": ["code"], "scope": "accounts profile",
        });
        let id = client_id(&register_pkjwt_with(sb, &http, key.jwks(), extra).await?)?;
        Ok(Self { sb, http, key, id })
    }

    async fn form(
        &self,
        url: &str,
        aud: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let assertion = self.key.assertion(&self.id, aud, 0.0, 60.0)?;
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", &self.id),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ];
        form.extend_from_slice(extra);
        Ok(self.http.post(url).form(&form).send().await?)
    }

    /// PAR then `/auth`; returns the redirect's query pairs.
    async fn code(&self, verifier: &str, state: &str) -> anyhow::Result<Vec<(String, String)>> {
        let now = now();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let request = self.key.sign(&json!({
            "iss": self.id, "client_id": self.id, "aud": self.sb.issuer(), "exp": now + 310.0,
            "nbf": now, "response_type": "code", "scope": "accounts profile", "redirect_uri": REDIRECT,
            "state": state, "nonce": uuid::Uuid::new_v4().to_string(),
            "code_challenge_method": "S256", "code_challenge": challenge,
        }))?;
        let par_url = format!("{}/par", self.sb.mtls_base());
        let par = self
            .form(&par_url, self.sb.issuer(), &[("request", &request)])
            .await?;
        anyhow::ensure!(par.status() == 201, "par answered {}", par.status());
        let par: Value = par.json().await?;
        assert_eq!(par["expires_in"], 90);
        let request_uri = par["request_uri"].as_str().unwrap_or_default().to_string();
        let auth_url = format!("{}/auth", self.sb.issuer());
        let query = [
            ("client_id", self.id.as_str()),
            ("request_uri", request_uri.as_str()),
        ];
        let redirect = self
            .http
            .get(url::Url::parse_with_params(&auth_url, query)?)
            .send()
            .await?;
        assert_eq!(redirect.status(), 303);
        let location = redirect
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(location.starts_with(REDIRECT), "{location}");
        let reused = self
            .http
            .get(url::Url::parse_with_params(&auth_url, query)?)
            .send()
            .await?;
        assert_eq!(reused.status(), 400, "request_uri is single-use");
        Ok(url::Url::parse(&location)?
            .query_pairs()
            .into_owned()
            .collect())
    }

    async fn exchange(&self, code: &str, verifier: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .form(
                &self.sb.token_endpoint(),
                self.sb.issuer(),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier),
                ],
            )
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }
}

fn pair<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn code_flow_with_pkce_issues_a_bound_token_and_a_refresh_token() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let cert = transport_cert("tpp")?;
    let flow = Consent::new(&sb, &cert).await?;
    let verifier = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let pairs = flow.code(&verifier, "st-1").await?;
    assert_eq!(pair(&pairs, "state"), "st-1");
    assert_eq!(pair(&pairs, "iss"), sb.issuer());

    let (status, body) = flow.exchange(pair(&pairs, "code"), &verifier).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "accounts profile");
    let access = body["access_token"].as_str().unwrap_or_default();
    assert_eq!(sb.introspect(access)["cnf"]["x5t#S256"], cert.x5t_s256());
    let (status, body2) = flow.exchange(pair(&pairs, "code"), &verifier).await?;
    assert_eq!(
        (status, body2["error"].as_str()),
        (400, Some("invalid_grant")),
        "code is single-use"
    );

    let refresh_token = body["refresh_token"].as_str().unwrap_or_default();
    let refreshed = flow
        .form(
            &sb.token_endpoint(),
            sb.issuer(),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await?;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await?;
    assert_ne!(refreshed["access_token"], body["access_token"]);
    Ok(())
}

#[tokio::test]
async fn wrong_code_verifier_is_invalid_grant_and_burns_the_code() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let flow = Consent::new(&sb, &transport_cert("tpp")?).await?;
    let verifier = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let pairs = flow.code(&verifier, "st-2").await?;
    let wrong = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let (status, body) = flow.exchange(pair(&pairs, "code"), &wrong).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(sb.counters().rejects_for("pkce_mismatch"), 1);
    let (status, _) = flow.exchange(pair(&pairs, "code"), &verifier).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn authorization_endpoint_without_par_is_refused() -> anyhow::Result<()> {
    let sb = start(|_| {}).await?;
    let response = http(&sb, None)?
        .get(url::Url::parse_with_params(
            &format!("{}/auth", sb.issuer()),
            [
                ("client_id", "x"),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
            ],
        )?)
        .send()
        .await?;
    assert_eq!(response.status(), 400);
    Ok(())
}
