//! `POST /tpp-registration` by content: `{}` → hub onboarding (204), JSON metadata → RFC 7591
//! (initial access token when configured), `application/jwt`/`application/jose` → signed
//! (software statement) registration; and RFC 7592 management at `/tpp-registration/{id}`
//! with `Bearer <RAT>`, rotating the RAT on GET/PUT when configured. Handlers only.

use std::sync::Arc;

use axum::{
    Extension,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value, json};

use super::{
    dn, metadata,
    oauth::bearer,
    reply::{HubError, OAuthError},
    signed,
    state::{AppState, Client, Onboarding, Origin, lock, now_secs},
    tls::Peer,
};

/// The media type of a request, lower-cased, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_jwt(media: &str) -> bool {
    matches!(media, "application/jwt" | "application/jose")
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(OAuthError::invalid_request(
            "body_not_json_object",
            "body must be a JSON object",
        )),
    }
}

/// `POST /tpp-registration`.
pub async fn register(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let media = media_type(&headers);
    if is_jwt(&media) {
        return match signed::verified_metadata(&state, &body) {
            Ok(map) => create(&state, map, Origin::Signed).into_response(),
            Err(e) => e.into_response(),
        };
    }
    if media != "application/json" {
        return OAuthError::invalid_request(
            "unsupported_media_type",
            "content type must be application/json or application/jwt",
        )
        .into_response();
    }
    let map = match json_object(&body) {
        Ok(map) => map,
        Err(_) => {
            return HubError {
                status: StatusCode::BAD_REQUEST,
                code: "Body.InvalidFormat",
                message: "body must be a JSON object".into(),
                reason: "body_not_json_object",
            }
            .into_response();
        }
    };
    if map.is_empty() {
        return onboard(&state, &peer).into_response();
    }
    if let Some(expected) = &state.cfg.initial_access_token {
        let presented = bearer(&headers).unwrap_or_default();
        if presented != expected.expose_secret() {
            return OAuthError::invalid_token(
                "bad_initial_access_token",
                "initial access token missing or invalid",
            )
            .into_response();
        }
    }
    create(&state, map, Origin::Dynamic).into_response()
}

fn onboard(state: &AppState, peer: &Peer) -> Result<StatusCode, HubError> {
    let cert = peer.0.as_ref().ok_or_else(|| HubError {
        status: StatusCode::UNAUTHORIZED,
        code: "AccessToken.Unauthorized",
        message: "a client certificate is required".into(),
        reason: "no_client_certificate",
    })?;
    let subject_dn = dn::render(&cert.subject);
    tracing::info!(subject_dn, x5t = %cert.x5t_s256, "hub onboarding accepted");
    lock(&state.store).onboard(Onboarding {
        subject_dn,
        x5t_s256: cert.x5t_s256.clone(),
        at: now_secs(),
    });
    lock(&state.counters).onboarded();
    Ok(StatusCode::NO_CONTENT)
}

fn new_rat() -> SecretString {
    SecretString::from(uuid::Uuid::new_v4().to_string())
}

/// The RFC 7591/7592 answer: metadata, RAT and configuration URI.
fn registration_body(state: &AppState, client: &Client) -> Value {
    let mut body = client.metadata.clone();
    if let Some(rat) = &client.rat {
        body.insert(
            "registration_access_token".into(),
            json!(rat.expose_secret()),
        );
    }
    body.insert(
        "registration_client_uri".into(),
        json!(state.urls.registration_client_uri(&client.client_id)),
    );
    Value::Object(body)
}

fn create(
    state: &AppState,
    mut map: Map<String, Value>,
    origin: Origin,
) -> Result<Response, OAuthError> {
    map.remove("client_id");
    let client_id = uuid::Uuid::new_v4().to_string();
    let mut client =
        metadata::build_client(&client_id, map, origin).map_err(OAuthError::invalid_metadata)?;
    client
        .metadata
        .insert("client_id_issued_at".into(), json!(now_secs()));
    client.rat = Some(new_rat());
    let body = registration_body(state, &client);
    if !lock(&state.store).put_client(client) {
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "client_table_full",
            "too many clients",
        ));
    }
    lock(&state.counters).registration_created();
    tracing::info!(client_id, ?origin, "client registered");
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

fn bad_rat() -> OAuthError {
    OAuthError::invalid_token(
        "bad_registration_access_token",
        "registration access token invalid",
    )
}

/// `GET /tpp-registration/{client_id}`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let rat = bearer(&headers).ok_or_else(bad_rat)?;
    let mut store = lock(&state.store);
    let client = store.client_by_rat(&client_id, rat).ok_or_else(bad_rat)?;
    if state.cfg.rotate_rat {
        client.rat = Some(new_rat());
    }
    Ok((
        StatusCode::OK,
        axum::Json(registration_body(&state, client)),
    )
        .into_response())
}

/// `PUT /tpp-registration/{client_id}` (JSON metadata, or a signed request JWT).
pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let rat = bearer(&headers).ok_or_else(bad_rat)?.to_string();
    if lock(&state.store).client_by_rat(&client_id, &rat).is_none() {
        return Err(bad_rat());
    }
    let map = if is_jwt(&media_type(&headers)) {
        let mut map = signed::verified_metadata(&state, &body)?;
        map.insert("client_id".into(), json!(client_id));
        map
    } else {
        let map = json_object(&body)?;
        if let Some(field) = metadata::SERVER_OWNED
            .iter()
            .find(|f| map.contains_key(**f))
        {
            return Err(OAuthError::invalid_request(
                "server_owned_field",
                format!("{field} must not be sent"),
            ));
        }
        if map.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
            return Err(OAuthError::invalid_request(
                "client_id_mismatch",
                "client_id must be present and match",
            ));
        }
        map
    };
    let mut store = lock(&state.store);
    let current = store.client_by_rat(&client_id, &rat).ok_or_else(bad_rat)?;
    let mut updated = metadata::build_client(&client_id, map, current.origin)
        .map_err(OAuthError::invalid_metadata)?;
    if let Some(issued_at) = current.metadata.get("client_id_issued_at") {
        updated
            .metadata
            .insert("client_id_issued_at".into(), issued_at.clone());
    }
    updated.rat = if state.cfg.rotate_rat {
        Some(new_rat())
    } else {
        current.rat.clone()
    };
    let body = registration_body(&state, &updated);
    store.put_client(updated);
    tracing::info!(client_id, "client updated");
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// `DELETE /tpp-registration/{client_id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, OAuthError> {
    let rat = bearer(&headers).ok_or_else(bad_rat)?;
    let mut store = lock(&state.store);
    if store.client_by_rat(&client_id, rat).is_none() {
        return Err(bad_rat());
    }
    store.remove_client(&client_id);
    tracing::info!(client_id, "client deleted");
    Ok(StatusCode::NO_CONTENT)
}
