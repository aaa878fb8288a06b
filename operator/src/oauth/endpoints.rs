//! Introspection (RFC 7662), revocation (RFC 7009) and pushed authorization requests
//! (RFC 9126), each over mTLS to the effective (aliased) endpoint with the token-endpoint
//! client authentication. Network I/O, except the parsers.

use secrecy::SecretString;
use serde_json::Value;

use super::client_auth::{ClientAuthn, Form};
use super::error::{OauthError, Step};
use super::metadata::{EndpointKind, ProviderMetadata};
use super::token::post_form;
use super::transport::AsClient;

/// An introspection answer; the token itself is never echoed.
#[derive(Debug, Clone, PartialEq)]
pub struct Introspection {
    /// Whether the token is active.
    pub active: bool,
    /// Granted scope.
    pub scope: Option<String>,
    /// The client the token was issued to.
    pub client_id: Option<String>,
    /// Expiry (NumericDate, fractions accepted).
    pub exp: Option<jiff::Timestamp>,
    /// RFC 8705 `cnf["x5t#S256"]`: the certificate the token is bound to.
    pub cnf_x5t_s256: Option<String>,
}

/// Parses an RFC 7662 response.
pub fn parse_introspection(body: &Value) -> Result<Introspection, OauthError> {
    let step = Step::Introspection;
    let obj = body.as_object().ok_or(OauthError::InvalidResponse {
        step,
        what: "introspection response is not a json object",
    })?;
    let active = obj
        .get("active")
        .and_then(Value::as_bool)
        .ok_or(OauthError::InvalidResponse {
            step,
            what: "introspection response has no boolean active",
        })?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Introspection {
        active,
        scope: text("scope"),
        client_id: text("client_id"),
        exp: obj.get("exp").and_then(super::registration::numeric_date),
        cnf_x5t_s256: obj
            .get("cnf")
            .and_then(|c| c.get("x5t#S256"))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// RFC 7662 introspection of `token`.
pub async fn introspect(
    client: &AsClient,
    meta: &ProviderMetadata,
    authn: &ClientAuthn,
    token: &SecretString,
) -> Result<Introspection, OauthError> {
    let step = Step::Introspection;
    let form = Form::default().secret("token", token.clone());
    let response = post_form(client, meta, EndpointKind::Introspection, step, authn, form).await?;
    parse_introspection(&response.json(step)?)
}

/// RFC 7009 revocation of `token` (`hint`: `access_token` or `refresh_token`); the AS answers
/// 200 even for unknown tokens.
pub async fn revoke(
    client: &AsClient,
    meta: &ProviderMetadata,
    authn: &ClientAuthn,
    token: &SecretString,
    hint: Option<&str>,
) -> Result<(), OauthError> {
    let mut form = Form::default().secret("token", token.clone());
    if let Some(hint) = hint {
        form = form.plain("token_type_hint", hint);
    }
    post_form(
        client,
        meta,
        EndpointKind::Revocation,
        Step::Revocation,
        authn,
        form,
    )
    .await?;
    Ok(())
}

/// A PAR answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRequest {
    /// `urn:ietf:params:oauth:request_uri:…`.
    pub request_uri: String,
    /// Seconds the request URI stays valid.
    pub expires_in: u64,
}

/// Parses an RFC 9126 response.
pub fn parse_par(body: &Value) -> Result<PushedRequest, OauthError> {
    let step = Step::PushedAuthorization;
    let request_uri = body
        .get("request_uri")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(OauthError::InvalidResponse {
            step,
            what: "par response has no request_uri",
        })?;
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        .ok_or(OauthError::InvalidResponse {
            step,
            what: "par response has no positive expires_in",
        })?;
    Ok(PushedRequest {
        request_uri: request_uri.to_owned(),
        expires_in,
    })
}

/// RFC 9126 PAR: POSTs `request=<JAR>` (signed by the caller) with client auth; any 2xx.
pub async fn push_authorization_request(
    client: &AsClient,
    meta: &ProviderMetadata,
    authn: &ClientAuthn,
    request_object: SecretString,
) -> Result<PushedRequest, OauthError> {
    let step = Step::PushedAuthorization;
    let form = Form::default().secret("request", request_object);
    let response = post_form(
        client,
        meta,
        EndpointKind::PushedAuthorizationRequest,
        step,
        authn,
        form,
    )
    .await?;
    parse_par(&response.json(step)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_an_active_cert_bound_introspection() {
        let body = json!({"active":true,"scope":"accounts","client_id":"c1","exp":1769767012.739,
                          "cnf":{"x5t#S256":"abc"}});
        let got = parse_introspection(&body).ok();
        assert_eq!(got.as_ref().map(|i| i.active), Some(true));
        assert_eq!(
            got.as_ref().and_then(|i| i.cnf_x5t_s256.as_deref()),
            Some("abc")
        );
        assert_eq!(
            got.and_then(|i| i.exp).map(|t| t.as_millisecond()),
            Some(1_769_767_012_739)
        );
    }

    #[test]
    fn introspection_without_active_is_invalid() {
        assert!(parse_introspection(&json!({"scope":"x"})).is_err());
        assert_eq!(
            parse_introspection(&json!({"active":false}))
                .ok()
                .map(|i| i.active),
            Some(false)
        );
    }

    #[test]
    fn parses_a_par_response_and_requires_both_fields() {
        let ok = parse_par(
            &json!({"request_uri":"urn:ietf:params:oauth:request_uri:x","expires_in":90}),
        );
        assert_eq!(ok.ok().map(|p| p.expires_in), Some(90));
        assert!(parse_par(&json!({"request_uri":"urn:x"})).is_err());
        assert!(parse_par(&json!({"expires_in":90})).is_err());
    }
}
