//! RFC 7592 client management at the `registration_client_uri`: GET, PUT (JSON or signed),
//! DELETE, with the registration access token (RAT) as Bearer. Network I/O.
//!
//! Contract: the RAT is only sent to a URI on the registration endpoint's or the issuer's
//! origin ([`OauthError::ForeignRegistrationUri`]); a new RAT (or management URI) in any
//! response is persisted through the [`RegistrationPersister`] before the function returns, and
//! a persistence failure fails the call; DELETE answered 404/410 means "already gone", 401
//! means the AS refused the RAT (the client may or may not remain: never "deleted").

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use url::Url;

use super::error::{OauthError, Step};
use super::registration::{
    Registration, RegistrationPersister, SignedContentType, check_registration_uri,
    parse_registration, persist,
};
use super::transport::{AsClient, AsRequest, RequestBody};

/// Fields RFC 7592 §2.2 forbids in a PUT body (oidc-provider answers 400 otherwise).
pub const PUT_EXCLUDED: [&str; 6] = [
    "registration_access_token",
    "registration_client_uri",
    "client_id_issued_at",
    "client_secret_expires_at",
    "client_secret",
    "client_id",
];

/// The origins a RAT may be sent to.
#[derive(Debug, Clone, Copy)]
pub struct ManagementTarget<'a> {
    /// The AS's registration endpoint.
    pub registration_endpoint: &'a str,
    /// The AS's issuer.
    pub issuer: &'a str,
}

/// What a DELETE found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The AS deleted the client (2xx).
    Deleted,
    /// The client no longer exists (404/410): nothing left to delete.
    AlreadyGone,
    /// The AS refused the RAT (401): the client was deleted before (some ASes answer so for a
    /// deleted client) or remains with a RAT we no longer hold. Not evidence of deletion.
    Refused,
}

fn target_of<'a>(
    step: Step,
    target: ManagementTarget<'_>,
    current: &'a Registration,
) -> Result<(Url, &'a SecretString), OauthError> {
    let uri = current
        .registration_client_uri
        .as_deref()
        .ok_or(OauthError::InvalidResponse {
            step,
            what: "registration has no registration_client_uri",
        })?;
    let url = check_registration_uri(uri, target.registration_endpoint, target.issuer)?;
    let rat = current
        .registration_access_token
        .as_ref()
        .ok_or(OauthError::InvalidResponse {
            step,
            what: "registration has no registration access token",
        })?;
    Ok((url, rat))
}

/// Merges a management response into the current registration and persists it when the RAT or
/// the management URI changed.
async fn absorb(
    step: Step,
    current: &Registration,
    body: Value,
    persister: &impl RegistrationPersister,
) -> Result<Registration, OauthError> {
    let mut next = parse_registration(step, body)?;
    if next.client_id != current.client_id {
        return Err(OauthError::InvalidResponse {
            step,
            what: "management response names another client_id",
        });
    }
    let rat_changed = match (
        &next.registration_access_token,
        &current.registration_access_token,
    ) {
        (Some(new), Some(old)) => new.expose_secret() != old.expose_secret(),
        (Some(_), None) => true,
        (None, _) => false,
    };
    if next.registration_access_token.is_none() {
        next.registration_access_token = current.registration_access_token.clone();
    }
    let uri_changed = next.registration_client_uri.is_some()
        && next.registration_client_uri != current.registration_client_uri;
    if next.registration_client_uri.is_none() {
        next.registration_client_uri = current.registration_client_uri.clone();
    }
    if next.client_id_issued_at.is_none() {
        next.client_id_issued_at = current.client_id_issued_at;
    }
    if rat_changed || uri_changed {
        persist(persister, &next).await?;
    }
    Ok(next)
}

/// RFC 7592 GET: the AS's current view of the client (200).
pub async fn read_client(
    client: &AsClient,
    target: ManagementTarget<'_>,
    current: &Registration,
    persister: &impl RegistrationPersister,
) -> Result<Registration, OauthError> {
    let step = Step::ReadRegistration;
    let (url, rat) = target_of(step, target, current)?;
    let response = client
        .send(step, AsRequest::new(reqwest::Method::GET, url).bearer(rat))
        .await?;
    if response.status != 200 {
        return Err(response.error(step, client.now()));
    }
    absorb(step, current, response.json(step)?, persister).await
}

/// The PUT body: `metadata` with `client_id` set and the RFC 7592 §2.2 exclusions removed.
pub fn put_body(client_id: &str, metadata: &Map<String, Value>) -> Map<String, Value> {
    let mut body = metadata.clone();
    for key in PUT_EXCLUDED {
        body.remove(key);
    }
    body.insert("client_id".into(), Value::String(client_id.to_owned()));
    body
}

/// RFC 7592 PUT with the full desired `metadata` (see [`put_body`]); 200 expected.
pub async fn update_client(
    client: &AsClient,
    target: ManagementTarget<'_>,
    current: &Registration,
    metadata: &Map<String, Value>,
    persister: &impl RegistrationPersister,
) -> Result<Registration, OauthError> {
    let step = Step::UpdateRegistration;
    let (url, rat) = target_of(step, target, current)?;
    let body = serde_json::to_vec(&put_body(&current.client_id, metadata))
        .map_err(|e| OauthError::invalid_json(step, &e))?;
    let req = AsRequest::new(reqwest::Method::PUT, url)
        .bearer(rat)
        .body("application/json", RequestBody::Public(body));
    let response = client.send(step, req).await?;
    if response.status != 200 {
        return Err(response.error(step, client.now()));
    }
    absorb(step, current, response.json(step)?, persister).await
}

/// SignedRequest PUT: a fresh signed request JWT with all claims; 200 expected.
pub async fn update_client_signed(
    client: &AsClient,
    target: ManagementTarget<'_>,
    current: &Registration,
    signed_request: SecretString,
    content_type: SignedContentType,
    persister: &impl RegistrationPersister,
) -> Result<Registration, OauthError> {
    let step = Step::UpdateRegistration;
    let (url, rat) = target_of(step, target, current)?;
    let req = AsRequest::new(reqwest::Method::PUT, url)
        .bearer(rat)
        .body(content_type.as_str(), RequestBody::Secret(signed_request));
    let response = client.send(step, req).await?;
    if response.status != 200 {
        return Err(response.error(step, client.now()));
    }
    absorb(step, current, response.json(step)?, persister).await
}

/// RFC 7592 DELETE: 2xx → [`DeleteOutcome::Deleted`]; 404/410 → [`DeleteOutcome::AlreadyGone`];
/// 401 → [`DeleteOutcome::Refused`].
pub async fn delete_client(
    client: &AsClient,
    target: ManagementTarget<'_>,
    current: &Registration,
) -> Result<DeleteOutcome, OauthError> {
    let step = Step::DeleteRegistration;
    let (url, rat) = target_of(step, target, current)?;
    let response = client
        .send(
            step,
            AsRequest::new(reqwest::Method::DELETE, url).bearer(rat),
        )
        .await?;
    match response.status {
        200..=299 => Ok(DeleteOutcome::Deleted),
        404 | 410 => Ok(DeleteOutcome::AlreadyGone),
        401 => Ok(DeleteOutcome::Refused),
        _ => Err(response.error(step, client.now())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn put_body_includes_client_id_and_drops_server_managed_fields() {
        let meta = json!({
            "client_name": "shop",
            "registration_access_token": "rat",
            "registration_client_uri": "https://as/reg/1",
            "client_id_issued_at": 1,
            "client_secret_expires_at": 0,
            "client_id": "stale",
            "jwks": {"keys": []}
        });
        let body = put_body("c1", meta.as_object().unwrap_or(&Map::new()));
        let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["client_id", "client_name", "jwks"]);
        assert_eq!(body.get("client_id"), Some(&json!("c1")));
    }
}
