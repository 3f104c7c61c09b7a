//! The error envelope every HTTP error uses:
//! `{"error": {"type": "...", "message": "...", "request_id": "..."}}` (plus `param` when a
//! request field is at fault). Internal errors never leak their details to the client.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use quarry_core::Error;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub error: Error,
    pub request_id: String,
}

impl ApiError {
    pub fn new(error: impl Into<Error>, request_id: &str) -> Self {
        Self {
            error: error.into(),
            request_id: request_id.to_owned(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let e = &self.error;
        let message = if e.status_code() >= 500 && matches!(e, Error::Internal(_)) {
            "internal error; the request id identifies it in the logs".to_owned()
        } else {
            e.to_string()
        };
        let mut error = json!({
            "type": e.error_type(),
            "message": message,
            "request_id": self.request_id,
        });
        if let Some(field) = e.field() {
            error["param"] = json!(field);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.error.status_code() >= 500 {
            tracing::error!(request_id = %self.request_id, error = %self.error, kind = self.error.error_type(), "request failed");
        } else {
            tracing::info!(request_id = %self.request_id, kind = self.error.error_type(), "request refused");
        }
        let status = StatusCode::from_u16(self.error.status_code())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(after) = self.error.retry_after() {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }
}
