//! Bedrock's error types, exactly as the REST-JSON protocol carries them.
//!
//! An error response has the HTTP status of the exception, an `x-amzn-errortype` header naming
//! it and a JSON body `{"message": ...}`: that is what the AWS SDKs parse into typed errors.
//! Inside an event stream the same errors travel as exception messages whose
//! `:exception-type` header is the lower-camel member name of the stream union.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// Every error type Bedrock Runtime returns, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    #[serde(alias = "validation")]
    ValidationException,
    #[serde(alias = "throttling")]
    ThrottlingException,
    #[serde(alias = "service_unavailable")]
    ServiceUnavailableException,
    #[serde(alias = "model_timeout")]
    ModelTimeoutException,
    #[serde(alias = "model_not_ready")]
    ModelNotReadyException,
    #[serde(alias = "model_error")]
    ModelErrorException,
    #[serde(alias = "internal")]
    InternalServerException,
    #[serde(alias = "access_denied")]
    AccessDeniedException,
    #[serde(alias = "not_found")]
    ResourceNotFoundException,
    #[serde(alias = "quota")]
    ServiceQuotaExceededException,
    #[serde(alias = "model_stream_error")]
    ModelStreamErrorException,
    #[serde(alias = "unknown_operation")]
    UnknownOperationException,
    /// The control plane's: a resource of that name exists already.
    #[serde(alias = "conflict")]
    ConflictException,
}

impl ErrorKind {
    pub fn type_name(self) -> &'static str {
        match self {
            Self::ValidationException => "ValidationException",
            Self::ThrottlingException => "ThrottlingException",
            Self::ServiceUnavailableException => "ServiceUnavailableException",
            Self::ModelTimeoutException => "ModelTimeoutException",
            Self::ModelNotReadyException => "ModelNotReadyException",
            Self::ModelErrorException => "ModelErrorException",
            Self::InternalServerException => "InternalServerException",
            Self::AccessDeniedException => "AccessDeniedException",
            Self::ResourceNotFoundException => "ResourceNotFoundException",
            Self::ServiceQuotaExceededException => "ServiceQuotaExceededException",
            Self::ModelStreamErrorException => "ModelStreamErrorException",
            Self::UnknownOperationException => "UnknownOperationException",
            Self::ConflictException => "ConflictException",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            // ConflictException is a 400 in Bedrock's API model, not a 409.
            Self::ValidationException
            | Self::ServiceQuotaExceededException
            | Self::ConflictException => StatusCode::BAD_REQUEST,
            Self::ThrottlingException | Self::ModelNotReadyException => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::ServiceUnavailableException => StatusCode::SERVICE_UNAVAILABLE,
            Self::ModelTimeoutException => StatusCode::REQUEST_TIMEOUT,
            Self::ModelErrorException | Self::ModelStreamErrorException => {
                StatusCode::FAILED_DEPENDENCY
            }
            Self::InternalServerException => StatusCode::INTERNAL_SERVER_ERROR,
            Self::AccessDeniedException => StatusCode::FORBIDDEN,
            Self::ResourceNotFoundException | Self::UnknownOperationException => {
                StatusCode::NOT_FOUND
            }
        }
    }

    /// The message Bedrock itself sends for this error when nothing more specific applies.
    pub fn default_message(self) -> &'static str {
        match self {
            Self::ValidationException => {
                "Malformed input request, please reformat your input and try again."
            }
            Self::ThrottlingException => "Too many requests, please wait before trying again.",
            Self::ServiceUnavailableException => "Bedrock is unable to process your request.",
            Self::ModelTimeoutException => {
                "Model has timed out in processing the request. Try your request again."
            }
            Self::ModelNotReadyException => {
                "Model is not ready to serve inference requests. Try your request again later."
            }
            Self::ModelErrorException => {
                "The system encountered an unexpected error during processing. Try your request again."
            }
            Self::InternalServerException => {
                "The server encountered an internal error while processing the request."
            }
            Self::AccessDeniedException => {
                "You don't have access to the model with the specified model ID."
            }
            Self::ResourceNotFoundException => {
                "The specified resource was not found. Check the identifier and try your request again."
            }
            Self::ServiceQuotaExceededException => {
                "Your request exceeds the service quota for your account."
            }
            Self::ModelStreamErrorException => "The model stream encountered an error.",
            Self::UnknownOperationException => "The requested operation is not supported.",
            Self::ConflictException => {
                "The request conflicts with the current state of the resource."
            }
        }
    }

    /// The member of the ConverseStream / InvokeModelWithResponseStream union that carries this
    /// error inside a stream. Errors the union has no member for travel as internal errors, as
    /// Bedrock does.
    pub fn stream_member(self, streaming_invoke: bool) -> &'static str {
        match self {
            Self::ValidationException => "validationException",
            Self::ThrottlingException => "throttlingException",
            Self::ServiceUnavailableException => "serviceUnavailableException",
            Self::ModelStreamErrorException | Self::ModelErrorException => {
                "modelStreamErrorException"
            }
            Self::ModelTimeoutException if streaming_invoke => "modelTimeoutException",
            _ => "internalServerException",
        }
    }
}

/// A Bedrock error with its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct BedrockError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BedrockError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn of(kind: ErrorKind) -> Self {
        Self::new(kind, kind.default_message())
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ValidationException, message)
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "message": self.message });
        if self.kind == ErrorKind::ModelErrorException {
            // ModelErrorException carries the upstream status, as Bedrock's does.
            body["originalStatusCode"] = serde_json::json!(500);
        }
        body
    }
}

impl IntoResponse for BedrockError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.kind.status(), axum::Json(body)).into_response();
        response.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.kind.type_name()),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_bedrock() {
        assert_eq!(ErrorKind::ThrottlingException.status().as_u16(), 429);
        assert_eq!(
            ErrorKind::ServiceUnavailableException.status().as_u16(),
            503
        );
        assert_eq!(ErrorKind::ModelTimeoutException.status().as_u16(), 408);
        assert_eq!(ErrorKind::ModelNotReadyException.status().as_u16(), 429);
        assert_eq!(ErrorKind::ModelErrorException.status().as_u16(), 424);
        assert_eq!(ErrorKind::InternalServerException.status().as_u16(), 500);
        assert_eq!(ErrorKind::AccessDeniedException.status().as_u16(), 403);
        assert_eq!(ErrorKind::ResourceNotFoundException.status().as_u16(), 404);
        assert_eq!(ErrorKind::ValidationException.status().as_u16(), 400);
    }

    #[test]
    fn kinds_parse_from_snake_or_type_names() {
        let k: ErrorKind = serde_json::from_str("\"throttling\"").unwrap();
        assert_eq!(k, ErrorKind::ThrottlingException);
        let k: ErrorKind = serde_json::from_str("\"ModelTimeoutException\"").unwrap();
        assert_eq!(k, ErrorKind::ModelTimeoutException);
    }
}
