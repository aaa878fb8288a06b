//! OAuth endpoints of the sandbox: `/token` (client_credentials, certificate-bound opaque
//! tokens), `/introspection` (RFC 7662), `/token/revoke` (RFC 7009), `/par` (RFC 9126) and
//! `/userinfo` (the resource-server binding check). Handlers only; state in [`AppState`].

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
    client_auth::{authenticate, client_keys, parse_form},
    jws,
    reply::OAuthError,
    state::{AppState, IssuedToken, lock, now_f64, now_secs},
    tls::Peer,
};

/// `expires_in` of a PAR `request_uri`.
const PAR_LIFETIME_SECS: u64 = 90;

/// A JSON answer with `Cache-Control: no-store` and an explicit UTF-8 content type.
fn json_no_store(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The RFC 7662 view of a token (also used by the admin API).
pub fn token_view(token: &IssuedToken) -> Value {
    json!({
        "active": true,
        "client_id": token.client_id,
        "scope": token.scope,
        "exp": token.exp,
        "iat": token.iat,
        "token_type": "Bearer",
        "cnf": {"x5t#S256": token.x5t_s256},
    })
}

/// `POST /token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse_form(&body);
    let client = authenticate(&state, &form, &peer, &state.urls.token()).await?;
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "unsupported_grant_type",
                "only client_credentials is supported",
            ));
        }
        None => {
            return Err(OAuthError::invalid_request(
                "missing_grant_type",
                "grant_type missing",
            ));
        }
    }
    let mut store = lock(&state.store);
    let registered = store.clients.get(&client.client_id).ok_or_else(|| {
        OAuthError::invalid_client("unknown_client", "client authentication failed")
    })?;
    if !registered
        .grant_types
        .iter()
        .any(|g| g == "client_credentials")
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "grant_type_not_registered",
            "client_credentials is not a registered grant type",
        ));
    }
    let requested: Vec<String> = match form.get("scope") {
        Some(s) => s.split_whitespace().map(str::to_string).collect(),
        None => registered.scopes.clone(),
    };
    if requested.iter().any(|s| s == "openid")
        || requested.iter().any(|s| !registered.scopes.contains(s))
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "invalid_scope",
            "requested scope is not allowed",
        ));
    }
    let scope = requested.join(" ");
    let access_token = uuid::Uuid::new_v4().to_string();
    let iat = now_secs();
    let lifetime = state.cfg.token_lifetime.as_secs();
    let issued = IssuedToken {
        client_id: client.client_id.clone(),
        scope: scope.clone(),
        iat,
        exp: iat + lifetime,
        x5t_s256: client.cert.x5t_s256.clone(),
    };
    if !store.put_token(access_token.clone(), issued) {
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "token_table_full",
            "too many live tokens",
        ));
    }
    drop(store);
    tracing::info!(client_id = %client.client_id, scope, "token issued");
    Ok(json_no_store(
        StatusCode::OK,
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}),
    ))
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

/// `POST /par`.
pub async fn par(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form = parse_form(&body);
    let client = authenticate(&state, &form, &peer, &state.urls.par()).await?;
    let request = form
        .get("request")
        .ok_or_else(|| OAuthError::invalid_request("missing_request_object", "request missing"))?;
    let keys = lock(&state.store)
        .clients
        .get(&client.client_id)
        .map(|c| c.keys.clone())
        .ok_or_else(|| {
            OAuthError::invalid_client("unknown_client", "client authentication failed")
        })?;
    let set = client_keys(&state, &keys).await?;
    let bad = |reason: &'static str, d: &str| {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_object",
            reason,
            d.to_string(),
        )
    };
    let claims = jws::verify_ps256(request, &set).map_err(|e| bad(e.reason(), &e.to_string()))?;
    let id = client.client_id.as_str();
    if claims.get("iss").and_then(Value::as_str) != Some(id)
        || claims.get("client_id").and_then(Value::as_str) != Some(id)
    {
        return Err(bad(
            "request_object_client_mismatch",
            "iss and client_id must be the client_id",
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => *s == state.urls.issuer,
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str() == Some(state.urls.issuer.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("request_object_bad_audience", "aud must be the issuer"));
    }
    let now = now_f64();
    match (jws::numeric(&claims, "exp"), jws::numeric(&claims, "nbf")) {
        (Some(exp), Some(nbf)) if exp > now && nbf - now < 60.0 && exp - nbf <= 600.0 => {}
        _ => {
            return Err(bad(
                "request_object_times",
                "exp/nbf missing or out of bounds",
            ));
        }
    }
    let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", uuid::Uuid::new_v4());
    Ok(json_no_store(
        StatusCode::CREATED,
        json!({"request_uri": request_uri, "expires_in": PAR_LIFETIME_SECS}),
    ))
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
