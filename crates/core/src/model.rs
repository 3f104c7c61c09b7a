//! The model port: what Quarry asks a model, what it gets back, and the trait an adapter
//! (Bedrock through the AWS SDK, or a fake in unit tests) implements.
//!
//! The types mirror Bedrock's Converse API, which every Bedrock chat model speaks, without
//! depending on the SDK.

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One block of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentBlock {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: Vec<ToolResultContent>,
        is_error: bool,
    },
    /// A Bedrock prompt-cache checkpoint: everything before it may be cached.
    CachePoint,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolResultContent {
    Text(String),
    Json(Value),
}

/// The text blocks of some content, concatenated.
pub fn text_of(blocks: &[ContentBlock]) -> String {
    blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::Text(text.into())],
        }
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::Text(text.into())],
        }
    }

    /// The message's text blocks, concatenated.
    pub fn text(&self) -> String {
        text_of(&self.content)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemBlock {
    Text(String),
    CachePoint,
}

/// Inference parameters, all optional: the model's defaults apply to what is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    Any,
    Tool(String),
}

/// A Bedrock guardrail applied by the model call itself (`guardrailConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailRef {
    pub id: String,
    pub version: String,
}

/// A request to one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    pub system: Vec<SystemBlock>,
    pub messages: Vec<Message>,
    pub params: InferenceParams,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
    pub guardrail: Option<GuardrailRef>,
    /// Converse `requestMetadata`: the request's tags, for Bedrock's own invocation logs
    /// (never part of the answer).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Token counts as Bedrock reports them: `input` excludes prompt-cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub cache_write: u64,
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

impl std::ops::Add for TokenUsage {
    type Output = TokenUsage;
    fn add(self, o: TokenUsage) -> TokenUsage {
        TokenUsage {
            input: self.input + o.input,
            output: self.output + o.output,
            cache_read: self.cache_read + o.cache_read,
            cache_write: self.cache_write + o.cache_write,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    GuardrailIntervened,
    ContentFiltered,
    /// The conversation no longer fits the model's context window.
    ContextWindowExceeded,
    /// The model produced output it could not form: its text or a tool call.
    MalformedModelOutput,
    MalformedToolUse,
    Other(String),
}

impl StopReason {
    pub fn from_bedrock(s: &str) -> Self {
        match s {
            "end_turn" => Self::EndTurn,
            "tool_use" => Self::ToolUse,
            "max_tokens" => Self::MaxTokens,
            "stop_sequence" => Self::StopSequence,
            "guardrail_intervened" => Self::GuardrailIntervened,
            "content_filtered" => Self::ContentFiltered,
            "model_context_window_exceeded" => Self::ContextWindowExceeded,
            "malformed_model_output" => Self::MalformedModelOutput,
            "malformed_tool_use" => Self::MalformedToolUse,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::EndTurn => "end_turn",
            Self::ToolUse => "tool_use",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::GuardrailIntervened => "guardrail_intervened",
            Self::ContentFiltered => "content_filtered",
            Self::ContextWindowExceeded => "model_context_window_exceeded",
            Self::MalformedModelOutput => "malformed_model_output",
            Self::MalformedToolUse => "malformed_tool_use",
            Self::Other(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    pub content: Vec<ContentBlock>,
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
    /// The model's own latency as Bedrock reports it.
    pub latency_ms: u64,
}

impl ModelResponse {
    pub fn text(&self) -> String {
        text_of(&self.content)
    }
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum StreamEvent {
    TextDelta {
        index: u32,
        text: String,
    },
    ToolUseStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolUseDelta {
        index: u32,
        input_json: String,
    },
    BlockStop {
        index: u32,
    },
    MessageStop {
        stop_reason: StopReason,
    },
    Metadata {
        usage: TokenUsage,
        latency_ms: u64,
    },
}

impl StreamEvent {
    /// True for events that carry model output (the first of these is the first token).
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            Self::TextDelta { .. } | Self::ToolUseStart { .. } | Self::ToolUseDelta { .. }
        )
    }
}

pub type ModelStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ModelError>> + Send>>;

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
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
