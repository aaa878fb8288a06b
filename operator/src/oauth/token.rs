//! The token endpoint: `client_credentials` over mTLS to the effective (aliased) token endpoint
//! with `private_key_jwt` or `tls_client_auth` (docs/protocol.md §5). Network I/O, except
//! [`parse_token_response`].
//!
//! Contract: one HTTP attempt per call with a freshly minted assertion; the access token is a
//! [`SecretString`] from the moment it is parsed; `expires_in` is required and positive;
//! `received_at` / `expires_at` come from the client's clock, read when the response arrived.

use std::time::Duration;

use jiff::Timestamp;
use secrecy::SecretString;
use serde_json::Value;

use super::client_auth::{ClientAuthn, Form};
use super::error::{OauthError, Step};
use super::metadata::{EndpointKind, ProviderMetadata};
use super::transport::{AsClient, AsRequest, AsResponse, RequestBody};

/// An access token and its lifetime.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// The opaque token (never parsed, never logged).
    pub access_token: SecretString,
    /// Always `Bearer` (checked case-insensitively, stored canonical).
    pub token_type: String,
    /// Granted scope, when the AS says.
    pub scope: Option<String>,
    /// `expires_in` as sent.
    pub expires_in: Duration,
    /// When the response arrived, on the client's clock.
    pub received_at: Timestamp,
    /// `received_at + expires_in`.
    pub expires_at: Timestamp,
    /// `x5t#S256` of the client certificate the token was requested with (its binding).
    pub bound_x5t_s256: Option<String>,
}

/// Parses a token response (RFC 6749 §5.1) received at `received_at`.
pub fn parse_token_response(
    body: &Value,
    received_at: Timestamp,
) -> Result<AccessToken, OauthError> {
    let invalid = |what| OauthError::InvalidTokenResponse { what };
    let obj = body
        .as_object()
        .ok_or(invalid("response is not a json object"))?;
    let access_token = match obj.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => SecretString::from(t.clone()),
        _ => return Err(invalid("missing access_token")),
    };
    match obj.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return Err(invalid("token_type is not Bearer")),
    }
    let expires_in = match obj.get("expires_in").and_then(Value::as_u64) {
        Some(secs) if secs > 0 => Duration::from_secs(secs),
        _ => return Err(invalid("expires_in is missing or not a positive integer")),
    };
    let expires_at = jiff::SignedDuration::try_from(expires_in)
        .ok()
        .and_then(|d| received_at.checked_add(d).ok())
        .ok_or(invalid("expires_in is out of range"))?;
    Ok(AccessToken {
        access_token,
        token_type: "Bearer".into(),
        scope: obj.get("scope").and_then(Value::as_str).map(str::to_owned),
        expires_in,
        received_at,
        expires_at,
        bound_x5t_s256: None,
    })
}

/// POSTs an authenticated form over mTLS to the effective endpoint `kind`; returns the 2xx
/// response, or the classified error (honouring the JWKS propagation window).
pub(crate) async fn post_form(
    client: &AsClient,
    meta: &ProviderMetadata,
    kind: EndpointKind,
    step: Step,
    authn: &ClientAuthn,
    form: Form,
) -> Result<AsResponse, OauthError> {
    if !client.is_mtls() {
        return Err(OauthError::ClientCertificateMissing { step });
    }
    let endpoint =
        meta.effective_endpoint(kind, true)
            .ok_or(OauthError::EndpointNotAdvertised {
                step,
                endpoint: kind.field(),
            })?;
    let url = url::Url::parse(endpoint).map_err(|source| OauthError::InvalidUrl {
        step,
        what: kind.field(),
        source,
    })?;
    let body = form.authenticate(authn, &meta.issuer, endpoint)?.encode();
    let req = AsRequest::new(reqwest::Method::POST, url).body(
        "application/x-www-form-urlencoded",
        RequestBody::Secret(body),
    );
    let response = client.send(step, req).await?;
    if response.is_success() {
        Ok(response)
    } else {
        Err(response
            .error(step, client.now())
            .within_jwks_propagation(authn.within_jwks_propagation))
    }
}

/// `client_credentials` grant for `scope` (space-delimited).
pub async fn client_credentials(
    client: &AsClient,
    meta: &ProviderMetadata,
    authn: &ClientAuthn,
    scope: &str,
) -> Result<AccessToken, OauthError> {
    client_credentials_for(client, meta, authn, scope, None).await
}

/// `client_credentials` grant for `scope`, for the protected resource `resource` when given:
/// the RFC 8707 `resource` parameter (`tokens[].audience`), an absolute URI the AS may bind the
/// token's audience to.
pub async fn client_credentials_for(
    client: &AsClient,
    meta: &ProviderMetadata,
    authn: &ClientAuthn,
    scope: &str,
    resource: Option<&str>,
) -> Result<AccessToken, OauthError> {
    let step = Step::Token;
    let form = Form::default().plain("grant_type", "client_credentials");
    let form = if scope.is_empty() {
        form
    } else {
        form.plain("scope", scope)
    };
    let form = match resource {
        Some(resource) if !resource.is_empty() => form.plain("resource", resource),
        _ => form,
    };
    let response = post_form(client, meta, EndpointKind::Token, step, authn, form).await?;
    let received_at = client.now();
    let mut token = parse_token_response(&response.json(step)?, received_at)?;
    token.bound_x5t_s256 = client.client_x5t_s256().map(str::to_owned);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;

    fn at() -> Timestamp {
        Timestamp::from_second(1_769_766_702).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn parses_the_v6_token_response() {
        let body = json!({"access_token":"26e0bf38-9fab-48e5-8be6-4a906905f959","token_type":"Bearer","expires_in":600,"scope":"accounts"});
        let token = parse_token_response(&body, at()).ok();
        let token = token.as_ref();
        assert_eq!(
            token.map(|t| t.access_token.expose_secret()),
            Some("26e0bf38-9fab-48e5-8be6-4a906905f959")
        );
        assert_eq!(
            token.map(|t| t.expires_at.as_second()),
            Some(1_769_766_702 + 600)
        );
        assert_eq!(token.and_then(|t| t.scope.as_deref()), Some("accounts"));
        assert!(!format!("{token:?}").contains("26e0bf38"));
    }

    #[test]
    fn accepts_token_type_in_any_case() {
        let body = json!({"access_token":"t","token_type":"bEaReR","expires_in":60});
        assert_eq!(
            parse_token_response(&body, at()).ok().map(|t| t.token_type),
            Some("Bearer".into())
        );
    }

    #[test]
    fn rejects_missing_zero_negative_or_textual_expires_in() {
        for expires_in in [json!(null), json!(0), json!(-5), json!("600"), json!(1.5)] {
            let body =
                json!({"access_token":"tok-x","token_type":"Bearer","expires_in":expires_in});
            let err = parse_token_response(&body, at()).err();
            assert_eq!(
                err.as_ref().map(|e| e.reason().as_str()),
                Some("InvalidTokenResponse"),
                "{expires_in}"
            );
            assert!(!format!("{err:?}").contains("tok-x"));
        }
    }

    #[test]
    fn rejects_a_non_bearer_token_or_a_missing_token() {
        let dpop = json!({"access_token":"t","token_type":"DPoP","expires_in":60});
        assert!(parse_token_response(&dpop, at()).is_err());
        let none = json!({"token_type":"Bearer","expires_in":60});
        assert!(parse_token_response(&none, at()).is_err());
    }
}
