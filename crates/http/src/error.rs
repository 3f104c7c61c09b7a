//! The error envelope every HTTP error uses:
//! `{"error": {"type": "...", "message": "...", "request_id": "..."}}` (plus `param` when a
//! request field is at fault). Internal errors never leak their details to the client.
//!
//! [`ApiError`] is the one place a domain [`Error`] becomes an HTTP response (status,
//! envelope, `Retry-After`, `x-request-id`); handlers return it, and the extractors' rejection
//! ([`Rejection`]) is one too, so a request refused before its handler runs looks the same.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use quarry_core::Error;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub error: Error,
    pub request_id: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    pub error: EnvelopeError,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvelopeError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
    pub request_id: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// Marks a response whose body is the envelope, so a layer can tell it from a bare answer
/// the framework wrote itself (the router's empty 404).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Enveloped;

impl ApiError {
    pub fn new(error: impl Into<Error>, request_id: &str) -> Self {
        Self {
            error: error.into(),
            request_id: request_id.to_owned(),
        }
    }

    pub fn body(&self) -> Envelope {
        let e = &self.error;
        let message = if e.status_code() >= 500 && matches!(e, Error::Internal(_)) {
            "internal error; the request id identifies it in the logs".to_owned()
        } else {
            e.to_string()
        };
        Envelope {
            error: EnvelopeError {
                kind: e.error_type(),
                message,
                request_id: self.request_id.clone(),
                param: e.field().map(str::to_owned),
            },
        }
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
        response.extensions_mut().insert(Enveloped);
        response
    }
}

/// The rejection of Quarry's extractors: the envelope, for a request refused before its
/// handler ran (no or unknown credentials, a body that is not JSON or too large, a malformed
/// path or query).
#[derive(Debug)]
pub struct Rejection(pub ApiError);

/// Set on the response of a [`Rejection`], for whoever logs requests: the handler that would
/// have written the request's log line never ran.
#[derive(Debug, Clone)]
pub struct Refused(pub Error);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let refused = Refused(self.0.error.clone());
        let mut response = self.0.into_response();
        response.extensions_mut().insert(refused);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_envelope_on_the_wire() {
        let e = ApiError::new(Error::bad_request("messages[0]", "no"), "r-1");
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            json!({"error": {"type": "invalid_request", "message": "no", "request_id": "r-1", "param": "messages[0]"}})
        );
        let e = ApiError::new(Error::Internal("secret detail".into()), "r-2");
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["error"]["type"], "internal_error");
        assert!(!body.to_string().contains("secret"), "{body}");
        assert!(body["error"].get("param").is_none());
    }

    #[test]
    fn a_rejection_is_the_envelope_marked_refused() {
        let response =
            Rejection(ApiError::new(Error::NotFound("gone".into()), "r-3")).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["x-request-id"], "r-3");
        assert!(response.extensions().get::<Enveloped>().is_some());
        assert!(matches!(
            response.extensions().get::<Refused>(),
            Some(Refused(Error::NotFound(_)))
        ));
    }
}
