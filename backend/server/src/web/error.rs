//! The HTTP error type: every handler error becomes a JSON body `{"error": {"code", "message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use cemiface_app::admin_protocol::FieldError;

/// An error a handler returns; internals are logged, the client sees a code and a plain message.
#[derive(Debug)]
pub enum AppError {
    /// The request is wrong (4xx); the message says why.
    BadRequest {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// The request body has invalid fields (422); each is listed.
    Invalid {
        message: String,
        fields: Vec<FieldError>,
    },
    /// Something failed inside the server (500); details stay in the log.
    Internal(anyhow::Error),
}

impl AppError {
    /// A 4xx error with a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Invalid { message, fields } => {
                let body = json!({ "error": { "code": "invalid", "message": message, "fields": fields } });
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            }
            Self::BadRequest {
                status,
                code,
                message,
            } => (status, code, message),
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal server error".to_owned(),
                )
            }
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}
