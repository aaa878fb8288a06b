//! OAuth endpoints of the sandbox: `/token` (client_credentials, authorization_code and
//! refresh_token grants; certificate-bound opaque tokens), `/introspection` (RFC 7662),
//! `/token/revoke` (RFC 7009) and `/userinfo` (the resource-server binding check). Handlers
//! only; state in [`AppState`].

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    client_auth::{authenticate, parse_form},
    reply::OAuthError,
    state::{AppState, IssuedToken, lock, now_secs},
    tls::Peer,
};

/// A JSON answer with `Cache-Control: no-store` and an explicit UTF-8 content type.
pub fn json_no_store(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The RFC 7662 view of a token (also used by the admin API); `aud` is the RFC 8707
/// `resource` it was requested for, when there was one.
pub fn token_view(token: &IssuedToken) -> Value {
    let mut view = json!({
        "active": true,
        "client_id": token.client_id,
        "scope": token.scope,
        "exp": token.exp,
        "iat": token.iat,
        "token_type": "Bearer",
        "cnf": {"x5t#S256": token.x5t_s256},
    });
    if let Some(resource) = &token.resource {
        view["aud"] = json!(resource);
    }
    view
}

fn token_error(error: &'static str, reason: &'static str, description: &str) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        error,
        reason,
        description.to_string(),
    )
}

/// The injected refusal of a certificate or signing key (`/_sandbox/refused-material`).
fn refuse_injected(
    state: &AppState,
    form: &std::collections::HashMap<String, String>,
    x5t_s256: &str,
) -> Result<(), OAuthError> {
    let kid = form
        .get("client_assertion")
        .and_then(|a| super::jws::header(a).ok())
        .and_then(|h| h.get("kid").and_then(Value::as_str).map(str::to_string));
    let faults = lock(&state.faults);
    if faults.refuses(x5t_s256) || kid.is_some_and(|kid| faults.refuses(&kid)) {
        return Err(OAuthError::invalid_client(
            "refused_material",
            "this certificate or signing key is not accepted",
        ));
    }
    Ok(())
}

/// With `bind_onboarding`: a hub client (`"hub_onboarding": true`) only over a certificate
/// the hub onboarded.
fn refuse_not_onboarded(
    state: &AppState,
    client_id: &str,
    x5t_s256: &str,
) -> Result<(), OAuthError> {
    if !state.cfg.bind_onboarding {
        return Ok(());
    }
    let store = lock(&state.store);
    let hub = store
        .clients
        .get(client_id)
        .is_some_and(|c| c.metadata.get("hub_onboarding") == Some(&Value::Bool(true)));
    if hub && !store.onboardings.iter().any(|o| o.x5t_s256 == x5t_s256) {
        return Err(OAuthError::invalid_client(
            "certificate_not_onboarded",
            "this certificate was not onboarded at the hub",
        ));
    }
    Ok(())
}

/// `POST /token`: `client_credentials`, `authorization_code` (PAR + PKCE) and `refresh_token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse_form(&body);
    let client = authenticate(&state, &form, &peer, &state.urls.token()).await?;
    refuse_injected(&state, &form, &client.cert.x5t_s256)?;
    refuse_not_onboarded(&state, &client.client_id, &client.cert.x5t_s256)?;
    let grant = form
        .get("grant_type")
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request("missing_grant_type", "grant_type missing"))?;
    if !matches!(
        grant,
        "client_credentials" | "authorization_code" | "refresh_token"
    ) {
        return Err(token_error(
            "unsupported_grant_type",
            "unsupported_grant_type",
            "grant type not supported",
        ));
    }
    let (scopes, grant_types) = lock(&state.store)
        .clients
        .get(&client.client_id)
        .map(|c| (c.scopes.clone(), c.grant_types.clone()))
        .ok_or_else(|| {
            OAuthError::invalid_client("unknown_client", "client authentication failed")
        })?;
    if !grant_types.iter().any(|g| g == grant) {
        return Err(token_error(
            "unauthorized_client",
            "grant_type_not_registered",
            "grant type not registered",
        ));
    }
    let id = client.client_id.as_str();
    let (scope, refresh_token) = match grant {
        "client_credentials" => {
            let requested: Vec<String> = match form.get("scope") {
                Some(s) => s.split_whitespace().map(str::to_string).collect(),
                None => scopes.clone(),
            };
            if requested
                .iter()
                .any(|s| s == "openid" || !scopes.contains(s))
            {
                return Err(token_error(
                    "invalid_scope",
                    "invalid_scope",
                    "requested scope is not allowed",
                ));
            }
            (requested.join(" "), None)
        }
        "authorization_code" => {
            let mut flows = lock(&state.flows);
            let scope = flows.redeem_code(&form, id)?;
            let refresh = grant_types
                .iter()
                .any(|g| g == "refresh_token")
                .then(|| flows.new_refresh_token(id, &scope))
                .flatten();
            (scope, refresh)
        }
        _ => (lock(&state.flows).refresh(&form, id)?, None),
    };
    let access_token = uuid::Uuid::new_v4().to_string();
    let iat = now_secs();
    let lifetime = state.cfg.token_lifetime.as_secs();
    let issued = IssuedToken {
        client_id: client.client_id.clone(),
        scope: scope.clone(),
        iat,
        exp: iat + lifetime,
        x5t_s256: client.cert.x5t_s256.clone(),
        resource: form.get("resource").cloned(),
    };
    if !lock(&state.store).put_token(access_token.clone(), issued) {
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "token_table_full",
            "too many live tokens",
        ));
    }
    tracing::info!(client_id = %client.client_id, grant, scope, "token issued");
    let mut body = json!({"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope});
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    Ok(json_no_store(StatusCode::OK, body))
}

/// `POST /introspection`.
pub async fn introspection(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse_form(&body);
    let url = format!("{}/introspection", state.urls.mtls_base);
    authenticate(&state, &form, &peer, &url).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("missing_token", "token missing"))?;
    let view = lock(&state.store)
        .token(token)
        .map(token_view)
        .unwrap_or_else(|| json!({"active": false}));
    Ok(json_no_store(StatusCode::OK, view))
}

/// `POST /token/revoke`.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<StatusCode, OAuthError> {
    let form = parse_form(&body);
    let url = format!("{}/token/revoke", state.urls.mtls_base);
    let client = authenticate(&state, &form, &peer, &url).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("missing_token", "token missing"))?;
    let mut store = lock(&state.store);
    if store
        .token(token)
        .is_some_and(|t| t.client_id == client.client_id)
    {
        store.revoke(token);
    }
    Ok(StatusCode::OK)
}

/// `GET /userinfo`: 200 only when the bearer token is live and bound to the presented cert.
pub async fn userinfo(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let token = bearer(&headers)
        .ok_or_else(|| OAuthError::invalid_token("missing_bearer", "bearer token required"))?;
    let store = lock(&state.store);
    let issued = store
        .token(token)
        .ok_or_else(|| OAuthError::invalid_token("unknown_token", "token is not active"))?;
    let bound = peer
        .0
        .as_ref()
        .is_some_and(|c| c.x5t_s256 == issued.x5t_s256);
    if !bound {
        return Err(OAuthError::invalid_token(
            "certificate_binding_mismatch",
            "token is bound to another certificate",
        ));
    }
    Ok(json_no_store(
        StatusCode::OK,
        json!({"sub": issued.client_id}),
    ))
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
