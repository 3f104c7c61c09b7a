//! How a model call fails, in Bedrock's terms.

use serde::{Deserialize, Serialize};

/// How a model call failed, in Bedrock's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelErrorKind {
    Throttled,
    ServiceUnavailable,
    ModelNotReady,
    ModelTimeout,
    InternalServer,
    /// The model itself failed (Bedrock's ModelErrorException, 424).
    ModelFailed,
    /// An error event inside a stream (ModelStreamErrorException).
    StreamError,
    /// Our own per-attempt time limit, or a network failure.
    Timeout,
    Network,
    Validation,
    AccessDenied,
    NotFound,
    QuotaExceeded,
}

impl ModelErrorKind {
    /// The request may have reached the model and been billed: it was cut off (our time
    /// limit, the network, Bedrock's model timeout) or failed inside a stream. Refusals
    /// (throttling, validation, access, quotas, outages) happen before inference.
    pub fn may_be_billed(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Network | Self::StreamError | Self::ModelTimeout
        )
    }

    /// Worth another attempt: transient conditions on Bedrock's side or the network.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Throttled
                | Self::ServiceUnavailable
                | Self::ModelNotReady
                | Self::ModelTimeout
                | Self::InternalServer
                | Self::Timeout
                | Self::Network
                | Self::StreamError
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::ServiceUnavailable => "service_unavailable",
            Self::ModelNotReady => "model_not_ready",
            Self::ModelTimeout => "model_timeout",
            Self::InternalServer => "internal_server",
            Self::ModelFailed => "model_failed",
            Self::StreamError => "stream_error",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Validation => "validation",
            Self::AccessDenied => "access_denied",
            Self::NotFound => "not_found",
            Self::QuotaExceeded => "quota_exceeded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ModelError {
    pub kind: ModelErrorKind,
    pub message: String,
}

impl ModelError {
    /// A ValidationException caused by this model's limits rather than by the request: the
    /// input is longer than its context window, or it lacks a capability the request uses.
    /// Another model of the chain may take the same request.
    pub fn is_model_limit(&self) -> bool {
        if self.kind != ModelErrorKind::Validation {
            return false;
        }
        let m = self.message.to_ascii_lowercase();
        [
            "input is too long",
            "too many input tokens",
            "prompt is too long",
            "context window",
            "context length",
            "doesn't support",
            "does not support",
            "is not supported for",
            "not supported by this model",
        ]
        .iter()
        .any(|p| m.contains(p))
    }

    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
