//! The core's error: every way a request can fail, with the HTTP status, the stable error
//! type clients match on, and whether retrying the same request may succeed.

use std::time::Duration;

use crate::invoke::{FailureKind, InvokeFailure, describe_attempts};
use crate::params::ParamError;
use crate::routing::RoutingError;
use crate::tenancy::AuthError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request is malformed; `field` names what to fix.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Routing(#[from] RoutingError),
    #[error("{}", invoke_message(.0))]
    Invoke(InvokeFailure),
    /// Configuration (routing, pricing, tenants, prompts) could not be read.
    #[error("{0}")]
    Config(#[from] ParamError),
    #[error("{0}")]
    Internal(String),
}

fn invoke_message(f: &InvokeFailure) -> String {
    let tried = describe_attempts(&f.attempts);
    match f.kind {
        FailureKind::Rejected => format!(
            "the model rejected the request: {}",
            f.last_error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or("validation error")
        ),
        FailureKind::Exhausted => format!("no model of the chain could answer; tried: {tried}"),
        FailureKind::DeadlineExceeded => format!(
            "no answer within the time budget of {} ms; tried: {tried}",
            f.budget.as_millis()
        ),
    }
}

impl Error {
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn status_code(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::PayloadTooLarge(_) => 413,
            Self::Routing(RoutingError::Invalid(_)) => 503,
            Self::Routing(_) => 400,
            Self::Invoke(f) => match f.kind {
                FailureKind::Rejected => 400,
                FailureKind::DeadlineExceeded => 504,
                FailureKind::Exhausted if f.is_transient() => 503,
                FailureKind::Exhausted => 502,
            },
            Self::Config(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// The stable `error.type` of the JSON envelope.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "invalid_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Routing(RoutingError::UnknownTier(..)) => "unknown_tier",
            Self::Routing(RoutingError::UnknownModel(_)) => "unknown_model",
            Self::Routing(RoutingError::Invalid(_)) => "configuration_error",
            Self::Invoke(f) => match f.kind {
                FailureKind::Rejected => "model_validation_error",
                FailureKind::DeadlineExceeded => "deadline_exceeded",
                FailureKind::Exhausted if f.is_transient() => "models_unavailable",
                FailureKind::Exhausted => "upstream_error",
            },
            Self::Config(ParamError::Unavailable(_)) => "configuration_unavailable",
            Self::Config(_) => "configuration_error",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Invoke(f) => f.is_transient(),
            Self::Config(ParamError::Unavailable(_)) => true,
            Self::Internal(_) => true,
            _ => false,
        }
    }

    /// A hint for `Retry-After`, when retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Invoke(f) if f.is_transient() => {
                Some(Duration::from_secs(if f.was_throttled() { 5 } else { 1 }))
            }
            Self::Config(ParamError::Unavailable(_)) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}
