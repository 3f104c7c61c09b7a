//! The core's error: every way a request can fail, with the HTTP status, the stable error
//! type clients match on, and whether retrying the same request may succeed.

use std::time::Duration;

use crate::invoke::{FailureKind, InvokeFailure, describe_attempts};
use crate::params::ParamError;
use crate::ports::{StoreError, StoreErrorKind};
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
    /// The route exists, with other methods (listed in the message and in `Allow`).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A body that is not JSON by its `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Routing(#[from] RoutingError),
    #[error("{}", invoke_message(.0))]
    Invoke(InvokeFailure),
    /// Configuration (routing, pricing, tenants, prompts) could not be read.
    #[error("{0}")]
    Config(#[from] ParamError),
    /// A dependency other than configuration failed: DynamoDB (cache, idempotency, jobs,
    /// ledger), SQS, SNS, Bedrock's guardrail API. The message names which.
    #[error("{0}")]
    Dependency(#[from] StoreError),
    /// Over budget with the `block` action (HTTP 402).
    #[error("{0}")]
    BudgetExceeded(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    /// A guardrail refused the request or the answer.
    #[error("{0}")]
    GuardrailBlocked(String),
    /// The answer failed the prompt's grounding check with the `block` action.
    #[error("{0}")]
    Ungrounded(String),
    /// The model's output did not validate against the requested schema, even after one
    /// repair attempt.
    #[error("{0}")]
    InvalidOutput(String),
    /// A stream failed after its first token (no fallback is possible then).
    #[error("{0}")]
    StreamInterrupted(String),
    /// An Idempotency-Key reused with a different body.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// The first request with this Idempotency-Key is still running.
    #[error("{0}")]
    InProgress(String),
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
            Self::MethodNotAllowed(_) => 405,
            Self::UnsupportedMediaType(_) => 415,
            Self::PayloadTooLarge(_) => 413,
            Self::Routing(RoutingError::Invalid(_)) => 503,
            Self::Routing(RoutingError::Residency(_)) => 403,
            Self::Routing(_) => 400,
            Self::Invoke(f) => match f.kind {
                FailureKind::Rejected => 400,
                FailureKind::DeadlineExceeded => 504,
                FailureKind::Exhausted if f.is_transient() => 503,
                FailureKind::Exhausted => 502,
            },
            Self::Config(_) => 503,
            Self::Dependency(e) => match e.kind {
                StoreErrorKind::Unavailable => 503,
                StoreErrorKind::Conflict => 409,
                StoreErrorKind::Invalid => 502,
            },
            Self::BudgetExceeded(_) => 402,
            Self::RateLimited { .. } => 429,
            Self::GuardrailBlocked(_) => 400,
            Self::Ungrounded(_) => 422,
            Self::InvalidOutput(_) => 502,
            Self::StreamInterrupted(_) => 502,
            Self::IdempotencyMismatch(_) => 422,
            Self::InProgress(_) => 409,
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
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Routing(RoutingError::UnknownTier(..)) => "unknown_tier",
            Self::Routing(RoutingError::UnknownModel(_)) => "unknown_model",
            Self::Routing(RoutingError::InvalidModelId(_)) => "invalid_request",
            Self::Routing(RoutingError::Invalid(_)) => "configuration_error",
            Self::Routing(RoutingError::Residency(_)) => "region_not_allowed",
            Self::Invoke(f) => match f.kind {
                FailureKind::Rejected => "model_validation_error",
                FailureKind::DeadlineExceeded => "deadline_exceeded",
                FailureKind::Exhausted if f.is_transient() => "models_unavailable",
                FailureKind::Exhausted => "upstream_error",
            },
            Self::Config(ParamError::Unavailable(_)) => "configuration_unavailable",
            Self::Config(_) => "configuration_error",
            Self::Dependency(e) => match e.kind {
                StoreErrorKind::Unavailable => "dependency_unavailable",
                StoreErrorKind::Conflict => "dependency_conflict",
                StoreErrorKind::Invalid => "dependency_error",
            },
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::RateLimited { .. } => "rate_limited",
            Self::GuardrailBlocked(_) => "guardrail_blocked",
            Self::Ungrounded(_) => "ungrounded_answer",
            Self::InvalidOutput(_) => "invalid_model_output",
            Self::StreamInterrupted(_) => "stream_interrupted",
            Self::IdempotencyMismatch(_) => "idempotency_key_reused",
            Self::InProgress(_) => "request_in_progress",
            Self::Internal(_) => "internal_error",
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Invoke(f) => f.is_transient(),
            Self::Config(ParamError::Unavailable(_)) => true,
            Self::Config(ParamError::NotFound(_) | ParamError::Invalid { .. }) => false,
            Self::Dependency(e) => e.is_retryable(),
            Self::Internal(_) => true,
            Self::RateLimited { .. } | Self::InProgress(_) | Self::InvalidOutput(_) => true,
            Self::StreamInterrupted(_) => true,
            Self::BadRequest { .. }
            | Self::Unauthorized(_)
            | Self::Forbidden(_)
            | Self::NotFound(_)
            | Self::MethodNotAllowed(_)
            | Self::UnsupportedMediaType(_)
            | Self::PayloadTooLarge(_)
            | Self::Routing(_)
            | Self::BudgetExceeded(_)
            | Self::GuardrailBlocked(_)
            | Self::Ungrounded(_)
            | Self::IdempotencyMismatch(_) => false,
        }
    }

    /// A hint for `Retry-After`, when retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Invoke(f) if f.is_transient() => {
                Some(Duration::from_secs(if f.was_throttled() { 5 } else { 1 }))
            }
            Self::Config(ParamError::Unavailable(_)) => Some(Duration::from_secs(5)),
            Self::Dependency(e) if e.kind == StoreErrorKind::Unavailable => {
                Some(Duration::from_secs(2))
            }
            Self::Dependency(e) if e.kind == StoreErrorKind::Conflict => {
                Some(Duration::from_secs(1))
            }
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            Self::InProgress(_) => Some(Duration::from_secs(1)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Dependency;

    #[test]
    fn a_dynamodb_outage_is_a_dependency_error_naming_dynamodb_not_configuration() {
        let e = Error::from(StoreError::unavailable(
            Dependency::DynamoDb,
            "idempotency store",
            "connection refused",
        ));
        assert_eq!(e.status_code(), 503);
        assert_eq!(e.error_type(), "dependency_unavailable");
        assert!(e.is_retryable());
        assert!(e.retry_after().is_some());
        assert!(e.to_string().contains("DynamoDB"), "{e}");
        assert!(e.to_string().contains("idempotency store"), "{e}");
        let corrupt = Error::from(StoreError::invalid(Dependency::DynamoDb, "jobs store", "x"));
        assert_eq!(
            (corrupt.status_code(), corrupt.is_retryable()),
            (502, false)
        );
    }
}
