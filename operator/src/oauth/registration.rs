//! Creating a client at the AS, in the four modes of docs/protocol.md §3: `Dynamic`
//! (RFC 7591 JSON), `SignedRequest` (OBIE-style `application/jwt`), `HubOnboarding` (Ozone:
//! mTLS `POST {}`), `Static` (nothing sent). Network I/O, except the pure parsing helpers.
//!
//! Contract: a successful Dynamic or SignedRequest registration is handed to the
//! [`RegistrationPersister`] before the function returns, and the call fails with
//! [`OauthError::PersistRegistration`] if that fails — a client id or registration access token
//! (RAT) that was not stored would be lost. The RAT and any client secret are held as
//! [`SecretString`]; the kept raw response has both removed.

use std::future::Future;

use jiff::Timestamp;
use secrecy::SecretString;
use serde_json::{Map, Value};
use url::Url;

use super::error::{OauthError, Step};
use super::transport::{AsClient, AsRequest, RequestBody};

/// Fields removed from the raw response because they are secrets.
const SECRET_FIELDS: [&str; 2] = ["registration_access_token", "client_secret"];

/// A registered client as the AS described it.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The issued client id.
    pub client_id: String,
    /// RFC 7592 registration access token, when issued.
    pub registration_access_token: Option<SecretString>,
    /// RFC 7592 management URI (for SignedRequest, `{registration_endpoint}/{client_id}` when
    /// the AS sent none).
    pub registration_client_uri: Option<String>,
    /// A client secret, when the AS issued one (unused by this operator, kept for completeness).
    pub client_secret: Option<SecretString>,
    /// `client_id_issued_at` (values above 10^11 read as milliseconds).
    pub client_id_issued_at: Option<Timestamp>,
    /// The response JSON without `registration_access_token` and `client_secret`.
    pub metadata: Map<String, Value>,
}

/// Why persisting a registration failed (no secret material in it).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PersistError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PersistError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Stores a registration (client id, RAT, management URI, raw response) durably, e.g. in the
/// `<name>-registration` Secret. Called before any registration function returns a new RAT.
/// Implementations should retry transient store errors themselves: once a rotated RAT is lost,
/// only re-registration recovers.
pub trait RegistrationPersister: Send + Sync {
    /// Persists `registration`; an error fails the registration call.
    fn persist(
        &self,
        registration: &Registration,
    ) -> impl Future<Output = Result<(), PersistError>> + Send;

    /// Records that a registration request is about to be sent: called once the AS's rate
    /// limiter let it go, immediately before it is sent (see [`AsClient::send_after`]). An
    /// error fails the call with nothing sent. The default records nothing.
    fn record_intent(&self) -> impl Future<Output = Result<(), PersistError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// [`RegistrationPersister::record_intent`] as the `ready` step of [`AsClient::send_after`].
async fn intent(persister: &impl RegistrationPersister) -> Result<(), OauthError> {
    persister
        .record_intent()
        .await
        .map_err(|source| OauthError::PersistRegistration { source })
}

/// `Content-Type` of a signed registration request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignedContentType {
    /// `application/jwt` (default).
    #[default]
    Jwt,
    /// `application/jose` (OBIE).
    Jose,
}

impl SignedContentType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedContentType::Jwt => "application/jwt",
            SignedContentType::Jose => "application/jose",
        }
    }
}

/// Reads a NumericDate that may be seconds, milliseconds (> 10^11) or fractional.
pub fn numeric_date(value: &Value) -> Option<Timestamp> {
    let secs = value.as_f64()?;
    let secs = if secs > 1e11 { secs / 1000.0 } else { secs };
    if !secs.is_finite() {
        return None;
    }
    let millis = (secs * 1000.0).round();
    if millis.abs() > 1e15 {
        return None;
    }
    Timestamp::from_millisecond(millis as i64).ok()
}

/// Parses a registration response body (RFC 7591 §3.2.1).
pub fn parse_registration(step: Step, body: Value) -> Result<Registration, OauthError> {
    let Value::Object(mut map) = body else {
        return Err(OauthError::InvalidResponse {
            step,
            what: "registration response is not a json object",
        });
    };
    let client_id = match map.get("client_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(OauthError::InvalidResponse {
                step,
                what: "registration response has no client_id",
            });
        }
    };
    let mut secret = |key: &str| match map.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(SecretString::from(s)),
        _ => None,
    };
    let registration_access_token = secret(SECRET_FIELDS[0]);
    let client_secret = secret(SECRET_FIELDS[1]);
    let registration_client_uri = map
        .get("registration_client_uri")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let client_id_issued_at = map.get("client_id_issued_at").and_then(numeric_date);
    Ok(Registration {
        client_id,
        registration_access_token,
        registration_client_uri,
        client_secret,
        client_id_issued_at,
        metadata: map,
    })
}

/// Checks that `uri` shares its origin (scheme, host, port) with the registration endpoint or
/// the issuer; a RAT is only ever sent to such a URI.
pub fn check_registration_uri(
    uri: &str,
    registration_endpoint: &str,
    issuer: &str,
) -> Result<Url, OauthError> {
    let url = Url::parse(uri).map_err(|source| OauthError::InvalidUrl {
        step: Step::ReadRegistration,
        what: "registration_client_uri",
        source,
    })?;
    let origin = url.origin();
    let allowed = [registration_endpoint, issuer]
        .iter()
        .filter_map(|u| Url::parse(u).ok())
        .any(|u| u.origin() == origin && origin.is_tuple());
    if allowed {
        Ok(url)
    } else {
        Err(OauthError::ForeignRegistrationUri {
            found: origin.ascii_serialization(),
        })
    }
}

fn parse_endpoint(step: Step, endpoint: &str) -> Result<Url, OauthError> {
    Url::parse(endpoint).map_err(|source| OauthError::InvalidUrl {
        step,
        what: "registration_endpoint",
        source,
    })
}

pub(crate) async fn persist(
    persister: &impl RegistrationPersister,
    registration: &Registration,
) -> Result<(), OauthError> {
    persister
        .persist(registration)
        .await
        .map_err(|source| OauthError::PersistRegistration { source })
}

/// `Dynamic`: RFC 7591 JSON registration. Sends `metadata` (with a Bearer initial access token
/// when given), expects 201 (200 tolerated), persists, returns.
pub async fn register_dynamic(
    client: &AsClient,
    registration_endpoint: &str,
    initial_access_token: Option<&SecretString>,
    metadata: &Map<String, Value>,
    persister: &impl RegistrationPersister,
) -> Result<Registration, OauthError> {
    let step = Step::Register;
    let url = parse_endpoint(step, registration_endpoint)?;
    let body = serde_json::to_vec(metadata).map_err(|e| OauthError::invalid_json(step, &e))?;
    let mut req = AsRequest::new(reqwest::Method::POST, url)
        .body("application/json", RequestBody::Public(body));
    if let Some(token) = initial_access_token {
        req = req.bearer(token);
    }
    let response = client.send_after(step, req, intent(persister)).await?;
    if !matches!(response.status, 200 | 201) {
        return Err(response.error(step, client.now()));
    }
    let registration = parse_registration(step, response.json(step)?)?;
    persist(persister, &registration).await?;
    Ok(registration)
}

/// `SignedRequest`: POSTs the caller's compact JWS as `application/jwt` (or `application/jose`),
/// expects 201 (200 tolerated); without `registration_client_uri` in the answer, the
/// management URI is `{registration_endpoint}/{client_id}`. Persists, returns.
pub async fn register_signed(
    client: &AsClient,
    registration_endpoint: &str,
    signed_request: SecretString,
    content_type: SignedContentType,
    persister: &impl RegistrationPersister,
) -> Result<Registration, OauthError> {
    let step = Step::Register;
    let url = parse_endpoint(step, registration_endpoint)?;
    let req = AsRequest::new(reqwest::Method::POST, url.clone())
        .body(content_type.as_str(), RequestBody::Secret(signed_request));
    let response = client.send_after(step, req, intent(persister)).await?;
    if !matches!(response.status, 200 | 201) {
        return Err(response.error(step, client.now()));
    }
    let mut registration = parse_registration(step, response.json(step)?)?;
    if registration.registration_client_uri.is_none() {
        let mut uri = url;
        if let Ok(mut segments) = uri.path_segments_mut() {
            segments.pop_if_empty().push(&registration.client_id);
        }
        registration.registration_client_uri = Some(uri.to_string());
    }
    persist(persister, &registration).await?;
    Ok(registration)
}

/// `HubOnboarding`: mTLS `POST {}` to the registration endpoint; any 2xx is success (no client
/// id is returned). A failure carries the hub's first `Errors[].Code` / `Message`.
pub async fn hub_onboard(client: &AsClient, registration_endpoint: &str) -> Result<(), OauthError> {
    let step = Step::HubOnboarding;
    if !client.is_mtls() {
        return Err(OauthError::ClientCertificateMissing { step });
    }
    let url = parse_endpoint(step, registration_endpoint)?;
    let req = AsRequest::new(reqwest::Method::POST, url)
        .body("application/json", RequestBody::Public(b"{}".to_vec()));
    let response = client.send(step, req).await?;
    if response.is_success() {
        Ok(())
    } else {
        Err(response.error(step, client.now()))
    }
}

/// `Static`: nothing is sent; the client id given out of band is the registration.
pub fn register_static(client_id: impl Into<String>) -> Registration {
    Registration {
        client_id: client_id.into(),
        registration_access_token: None,
        registration_client_uri: None,
        client_secret: None,
        client_id_issued_at: None,
        metadata: Map::new(),
    }
}

#[cfg(test)]
#[path = "registration_tests.rs"]
mod tests;
