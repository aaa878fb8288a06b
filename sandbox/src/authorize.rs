//! The consent-flow half of the sandbox: `POST /par` (RFC 9126: client auth, PS256 request
//! object verified with the client's keys, PKCE S256 required) → single-use `request_uri`
//! (90 s); `GET /auth?client_id&request_uri` auto-approves (no login UI) and redirects `303`
//! with a single-use code (60 s) plus `state` and `iss`; the code and refresh grants that
//! `/token` redeems. No id_token is issued. Handlers and bounded in-memory tables.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Extension,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    client_auth::{authenticate, client_keys, parse_form},
    jws,
    oauth::json_no_store,
    reply::OAuthError,
    state::{AppState, lock, now_f64, now_secs},
    tls::Peer,
};

/// `expires_in` of a `request_uri`.
pub const REQUEST_URI_LIFETIME_SECS: u64 = 90;
/// Lifetime of an authorization code.
pub const CODE_LIFETIME_SECS: u64 = 60;
/// Lifetime of a refresh token.
pub const REFRESH_LIFETIME_SECS: u64 = 3600;
/// Most entries in each table.
const MAX_ENTRIES: usize = 10_000;

/// An authorization request awaiting `/auth` or a code awaiting `/token`.
#[derive(Clone, Debug)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: String,
    exp: u64,
}

/// A refresh grant.
#[derive(Clone, Debug)]
struct RefreshGrant {
    client_id: String,
    scope: String,
    exp: u64,
}

/// Pushed requests, codes and refresh tokens (values are keys; never logged).
#[derive(Default)]
pub struct Flows {
    pushed: HashMap<String, Pending>,
    codes: HashMap<String, Pending>,
    refresh: HashMap<String, RefreshGrant>,
}

fn insert_bounded<V>(
    map: &mut HashMap<String, V>,
    key: String,
    value: V,
    exp: impl Fn(&V) -> u64,
) -> bool {
    if map.len() >= MAX_ENTRIES {
        let now = now_secs();
        map.retain(|_, v| exp(v) > now);
        if map.len() >= MAX_ENTRIES {
            return false;
        }
    }
    map.insert(key, value);
    true
}

fn invalid_grant(reason: &'static str, description: &str) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        reason,
        description.to_string(),
    )
}

impl Flows {
    /// Redeems an authorization code (single use, PKCE S256, same client and redirect_uri);
    /// returns the granted scope.
    pub fn redeem_code(
        &mut self,
        form: &HashMap<String, String>,
        client_id: &str,
    ) -> Result<String, OAuthError> {
        let code = form
            .get("code")
            .ok_or_else(|| OAuthError::invalid_request("missing_code", "code missing"))?;
        let pending = self
            .codes
            .remove(code)
            .ok_or_else(|| invalid_grant("unknown_code", "code unknown or already used"))?;
        if pending.exp <= now_secs() {
            return Err(invalid_grant("code_expired", "code expired"));
        }
        if pending.client_id != client_id {
            return Err(invalid_grant(
                "code_client_mismatch",
                "code was issued to another client",
            ));
        }
        if form.get("redirect_uri") != Some(&pending.redirect_uri) {
            return Err(invalid_grant(
                "redirect_uri_mismatch",
                "redirect_uri does not match",
            ));
        }
        let verifier = form
            .get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default();
        let valid_shape = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !valid_shape
            || URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != pending.code_challenge
        {
            return Err(invalid_grant(
                "pkce_mismatch",
                "code_verifier does not match",
            ));
        }
        Ok(pending.scope)
    }

    /// Issues a refresh token for `client_id`; `None` when the table is full.
    pub fn new_refresh_token(&mut self, client_id: &str, scope: &str) -> Option<String> {
        let token = uuid::Uuid::new_v4().to_string();
        let grant = RefreshGrant {
            client_id: client_id.into(),
            scope: scope.into(),
            exp: now_secs() + REFRESH_LIFETIME_SECS,
        };
        insert_bounded(&mut self.refresh, token.clone(), grant, |g| g.exp).then_some(token)
    }

    /// Checks a refresh token (not rotated); returns its scope.
    pub fn refresh(
        &self,
        form: &HashMap<String, String>,
        client_id: &str,
    ) -> Result<String, OAuthError> {
        let token = form.get("refresh_token").ok_or_else(|| {
            OAuthError::invalid_request("missing_refresh_token", "refresh_token missing")
        })?;
        match self.refresh.get(token) {
            Some(g) if g.client_id == client_id && g.exp > now_secs() => Ok(g.scope.clone()),
            _ => Err(invalid_grant(
                "unknown_refresh_token",
                "refresh token invalid",
            )),
        }
    }
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
    let (keys, scopes, redirect_uris) = {
        let store = lock(&state.store);
        let c = store.clients.get(&client.client_id).ok_or_else(|| {
            OAuthError::invalid_client("unknown_client", "client authentication failed")
        })?;
        let uris: Vec<String> = c
            .metadata
            .get("redirect_uris")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        (c.keys.clone(), c.scopes.clone(), uris)
    };
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
    let claim = |name: &str| claims.get(name).and_then(Value::as_str);
    let id = client.client_id.as_str();
    if claim("iss") != Some(id) || claim("client_id") != Some(id) {
        return Err(bad(
            "request_object_client_mismatch",
            "iss and client_id must be the client_id",
        ));
    }
    let issuer = state.urls.issuer.as_str();
    let aud_ok = match claims.get("aud") {
        Some(Value::String(s)) => s == issuer,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(issuer)),
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
    if claim("response_type") != Some("code") {
        return Err(bad(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let (Some("S256"), Some(challenge)) = (claim("code_challenge_method"), claim("code_challenge"))
    else {
        return Err(bad("pkce_required", "PKCE with S256 is required"));
    };
    let redirect_uri = claim("redirect_uri").unwrap_or_default().to_string();
    if !redirect_uris.contains(&redirect_uri) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "invalid_redirect_uri",
            "redirect_uri is not registered",
        ));
    }
    let scope = claim("scope").unwrap_or_default().to_string();
    if scope
        .split_whitespace()
        .any(|s| s != "openid" && !scopes.iter().any(|r| r == s))
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "invalid_scope",
            "requested scope is not allowed",
        ));
    }
    let pending = Pending {
        client_id: id.to_string(),
        redirect_uri,
        scope,
        state: claim("state").map(str::to_string),
        code_challenge: challenge.to_string(),
        exp: now_secs() + REQUEST_URI_LIFETIME_SECS,
    };
    let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", uuid::Uuid::new_v4());
    if !insert_bounded(
        &mut lock(&state.flows).pushed,
        request_uri.clone(),
        pending,
        |p| p.exp,
    ) {
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "par_table_full",
            "too many pushed requests",
        ));
    }
    Ok(json_no_store(
        StatusCode::CREATED,
        json!({"request_uri": request_uri, "expires_in": REQUEST_URI_LIFETIME_SECS}),
    ))
}

/// `GET /auth?client_id&request_uri`: auto-approves and redirects with a code.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, OAuthError> {
    let request_uri = query.get("request_uri").ok_or_else(|| {
        OAuthError::invalid_request("par_required", "pushed authorization request required")
    })?;
    let mut flows = lock(&state.flows);
    let pending = flows
        .pushed
        .remove(request_uri)
        .filter(|p| p.exp > now_secs())
        .ok_or_else(|| {
            OAuthError::invalid_request(
                "unknown_request_uri",
                "request_uri unknown, used or expired",
            )
        })?;
    if query.get("client_id") != Some(&pending.client_id) {
        return Err(OAuthError::invalid_request(
            "request_uri_client_mismatch",
            "client_id does not match the request",
        ));
    }
    let mut location = url::Url::parse(&pending.redirect_uri).map_err(|_| {
        OAuthError::invalid_request("invalid_redirect_uri", "redirect_uri unusable")
    })?;
    let code = uuid::Uuid::new_v4().to_string();
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(s) = &pending.state {
            pairs.append_pair("state", s);
        }
        pairs.append_pair("iss", &state.urls.issuer);
    }
    let code_entry = Pending {
        exp: now_secs() + CODE_LIFETIME_SECS,
        ..pending
    };
    if !insert_bounded(&mut flows.codes, code, code_entry, |p| p.exp) {
        return Err(OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "code_table_full",
            "too many codes",
        ));
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    let location = HeaderValue::from_str(location.as_str()).map_err(|_| {
        OAuthError::invalid_request("invalid_redirect_uri", "redirect_uri unusable")
    })?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}
