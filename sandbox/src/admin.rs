//! The test-only admin API under `/_sandbox/` (no client certificate needed): out-of-band
//! client provisioning and deletion, token introspection, fault injection, counters,
//! onboarding records and the `jwks_uri` cache. Handlers only.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    faults::Fault,
    metadata,
    oauth::token_view,
    state::{AppState, Origin, lock},
};

/// The admin routes, to be nested under `/_sandbox`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/clients", post(provision))
        .route("/clients/{id}", get(read_client).delete(delete_client))
        .route("/introspect", post(introspect))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/refused-material", post(refuse_material))
        .route("/refused-material/{material}", delete(accept_material))
        .route("/counters", get(counters).delete(reset_counters))
        .route("/onboardings", get(onboardings))
        .route("/jwks-cache", delete(clear_jwks_cache))
}

fn admin_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// `POST /_sandbox/clients`: provision a client out of band (Static / HubOnboarding).
/// Body: client metadata (`client_id` optional, generated when absent).
async fn provision(
    State(state): State<Arc<AppState>>,
    Json(body): Json<Map<String, Value>>,
) -> Response {
    let client_id = body
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    match metadata::build_client(&client_id, body, Origin::Admin) {
        Ok(client) => {
            let echoed = Value::Object(client.metadata.clone());
            if !lock(&state.store).put_client(client) {
                return admin_error(StatusCode::SERVICE_UNAVAILABLE, "client table full");
            }
            tracing::info!(client_id, "client provisioned out of band");
            (StatusCode::CREATED, Json(echoed)).into_response()
        }
        Err(message) => admin_error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn read_client(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match lock(&state.store).clients.get(&id) {
        Some(client) => {
            let mut body = client.metadata.clone();
            body.insert("origin".into(), json!(client.origin));
            Json(Value::Object(body)).into_response()
        }
        None => admin_error(StatusCode::NOT_FOUND, "no such client"),
    }
}

async fn delete_client(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if lock(&state.store).remove_client(&id) {
        tracing::info!(client_id = id, "client deleted out of band");
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, "no such client")
    }
}

#[derive(Deserialize)]
struct IntrospectRequest {
    token: String,
}

async fn introspect(
    State(state): State<Arc<AppState>>,
    Json(req): Json<IntrospectRequest>,
) -> Json<Value> {
    Json(
        lock(&state.store)
            .token(&req.token)
            .map(token_view)
            .unwrap_or_else(|| json!({"active": false})),
    )
}

async fn add_fault(State(state): State<Arc<AppState>>, Json(fault): Json<Fault>) -> Response {
    if lock(&state.faults).add(fault) {
        StatusCode::CREATED.into_response()
    } else {
        admin_error(StatusCode::SERVICE_UNAVAILABLE, "fault table full")
    }
}

#[derive(Deserialize)]
struct RefusedMaterial {
    material: String,
}

async fn refuse_material(
    State(state): State<Arc<AppState>>,
    Json(body): Json<RefusedMaterial>,
) -> Response {
    if lock(&state.faults).refuse(&body.material) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "refused-material table full",
        )
    }
}

async fn accept_material(
    State(state): State<Arc<AppState>>,
    Path(material): Path<String>,
) -> StatusCode {
    lock(&state.faults).accept(&material);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(state): State<Arc<AppState>>) -> StatusCode {
    lock(&state.faults).clear();
    StatusCode::NO_CONTENT
}

async fn counters(State(state): State<Arc<AppState>>) -> Response {
    Json(lock(&state.counters).snapshot()).into_response()
}

async fn reset_counters(State(state): State<Arc<AppState>>) -> StatusCode {
    lock(&state.counters).reset();
    StatusCode::NO_CONTENT
}

async fn onboardings(State(state): State<Arc<AppState>>) -> Response {
    Json(lock(&state.store).onboardings.clone()).into_response()
}

async fn clear_jwks_cache(State(state): State<Arc<AppState>>) -> StatusCode {
    state.jwks.clear();
    StatusCode::NO_CONTENT
}
