//! Error answers of the sandbox: RFC 6749 §5.2 JSON (`{"error","error_description"}`) and the
//! Ozone hub shape (`{"Errors":[{Code,Message,Path,Url}]}`). Each carries a rejection reason
//! that the connection layer counts (via a response extension). Pure; no I/O.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// The rejection reason attached to an error response, counted by the server loop.
#[derive(Clone, Copy, Debug)]
pub struct RejectReason(pub &'static str);

/// An OAuth error answer.
#[derive(Debug)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// RFC 6749 `error` code.
    pub error: &'static str,
    /// Human-readable description (never contains secrets).
    pub description: String,
    /// Counter key.
    pub reason: &'static str,
}

impl OAuthError {
    /// A new error.
    pub fn new(
        status: StatusCode,
        error: &'static str,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            reason,
        }
    }

    /// 401 `invalid_client`.
    pub fn invalid_client(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            reason,
            description,
        )
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            reason,
            description,
        )
    }

    /// 400 `invalid_client_metadata`.
    pub fn invalid_metadata(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "invalid_client_metadata",
            description,
        )
    }

    /// 401 `invalid_token` (bad RAT, initial access token, or bearer token).
    pub fn invalid_token(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            reason,
            description,
        )
    }

    /// 400 `invalid_software_statement`.
    pub fn invalid_software_statement(
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_software_statement",
            reason,
            description,
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.error == "invalid_token" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response.extensions_mut().insert(RejectReason(self.reason));
        response
    }
}

/// A hub (Ozone API Hub) error answer: `{"Errors":[{Code,Message,Path,Url}]}`.
#[derive(Debug)]
pub struct HubError {
    /// HTTP status.
    pub status: StatusCode,
    /// `Code`, e.g. `GenericError`.
    pub code: &'static str,
    /// `Message`.
    pub message: String,
    /// Counter key.
    pub reason: &'static str,
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let body = json!({"Errors": [{
            "Code": self.code,
            "Message": self.message,
            "Path": "",
            "Url": "",
        }]});
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(RejectReason(self.reason));
        response
    }
}
