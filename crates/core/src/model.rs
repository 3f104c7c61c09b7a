//! The model port: what Quarry asks a model, what it gets back, and the trait an adapter
//! (Bedrock through the AWS SDK, or a fake in unit tests) implements.
//!
//! The types mirror Bedrock's Converse API, which every Bedrock chat model speaks, without
//! depending on the SDK.

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::media::{Document, DocumentFormat, DocumentSource, Image, ImageFormat};

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
    Image(Image),
    Document(Document),
    /// The model's reasoning, with the signature that lets it be sent back on a later turn
    /// (Bedrock refuses reasoning whose signature does not match its text).
    Reasoning {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the provider encrypted: passed back unchanged, never shown.
    RedactedReasoning(#[serde(with = "crate::media::b64")] Vec<u8>),
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
    /// Ask the model to follow `input_schema` exactly (models with `strict_tools`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
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

/// How hard a reasoning model should think: an effort, or (for models that take one) a
/// budget of reasoning tokens. Mapped per model by [`crate::invoke::request_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReasoningRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// Reasoning tokens for models that take a budget (Claude's minimum is 1,024).
    pub fn budget(self) -> u32 {
        match self {
            Self::Minimal => 1_024,
            Self::Low => 2_048,
            Self::Medium => 8_192,
            Self::High => 24_576,
        }
    }

    /// The effort a budget amounts to, for models that take an effort.
    pub fn of_budget(tokens: u32) -> Self {
        match tokens {
            0..=1_024 => Self::Minimal,
            1_025..=4_096 => Self::Low,
            4_097..=16_384 => Self::Medium,
            _ => Self::High,
        }
    }
}

/// Bedrock's service tiers (Converse `serviceTier`): flex is cheaper and slower, priority
/// dearer and first in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceTier {
    Default,
    Flex,
    Priority,
    Reserved,
}

impl ServiceTier {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "default" => Self::Default,
            "flex" => Self::Flex,
            "priority" => Self::Priority,
            "reserved" => Self::Reserved,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Flex => "flex",
            Self::Priority => "priority",
            Self::Reserved => "reserved",
        }
    }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningRequest>,
    /// The service tier asked for; `None` is Bedrock's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// Converse `performanceConfig.latency: optimized`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub latency_optimized: bool,
    /// `parallel_tool_calls: false`: at most one tool call per turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_tool_call: bool,
    /// Converse `additionalModelRequestFields`, in the target model's own terms: set per
    /// model by [`crate::invoke::request_for`], never by callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_fields: Option<Value>,
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
    /// The part of `cache_write` written with a one-hour TTL (priced higher than the
    /// five-minute default), from Bedrock's `cacheDetails`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_1h: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
            cache_write_1h: self.cache_write_1h + o.cache_write_1h,
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
    /// Where the answer cites the request's documents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
    /// What the call reported beyond the answer: the tier that served it, the model a
    /// prompt router chose, what a Bedrock guardrail did.
    #[serde(default, skip_serializing_if = "Served::is_empty")]
    pub served: Served,
}

/// What Bedrock reports about how a call was served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The service tier that served the call (Converse `serviceTier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// The model a prompt router sent the call to (`trace.promptRouter.invokedModelId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoked_model: Option<String>,
    /// What the Bedrock guardrail of the call did, from its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail: Option<GuardrailOutcome>,
}

impl Served {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Later reports fill what earlier ones left out.
    pub fn merge(&mut self, other: Served) {
        self.service_tier = other.service_tier.or(self.service_tier);
        self.invoked_model = other.invoked_model.or(self.invoked_model.take());
        self.guardrail = match (self.guardrail, other.guardrail) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What a Bedrock guardrail did to an answer: `Masked` answers are Bedrock's anonymised
/// text and are delivered; `Blocked` ones are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailOutcome {
    Masked,
    Blocked,
}

/// A span of a document the answer cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    /// The cited document's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The quoted text of the document.
    #[serde(default)]
    pub quote: String,
    /// Which document (its position among the request's documents) and where in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<CitationLocation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitationLocation {
    /// `char`, `page` or `chunk`: what `start` and `end` count.
    pub unit: CitationUnit,
    pub document_index: u32,
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CitationUnit {
    Char,
    Page,
    Chunk,
}

impl ModelResponse {
    pub fn text(&self) -> String {
        text_of(&self.content)
    }

    /// The reasoning blocks (signed or redacted), as the next turn must send them back.
    pub fn reasoning_blocks(&self) -> Vec<ContentBlock> {
        self.content
            .iter()
            .filter(|b| {
                matches!(
                    b,
                    ContentBlock::Reasoning { .. } | ContentBlock::RedactedReasoning(_)
                )
            })
            .cloned()
            .collect()
    }

    /// The reasoning text of the answer, if the model reasoned.
    pub fn reasoning(&self) -> Option<String> {
        reasoning_of(&self.content)
    }
}

/// The reasoning blocks of some content, concatenated.
pub fn reasoning_of(blocks: &[ContentBlock]) -> Option<String> {
    let mut out: Option<String> = None;
    for b in blocks {
        if let ContentBlock::Reasoning { text, .. } = b {
            out.get_or_insert_with(String::new).push_str(text);
        }
    }
    out
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
    /// A piece of the model's reasoning.
    ReasoningDelta {
        index: u32,
        text: String,
    },
    /// The signature of the reasoning block `index` (sent once, after its text).
    ReasoningSignature {
        index: u32,
        signature: String,
    },
    RedactedReasoning {
        index: u32,
        #[serde(with = "crate::media::b64")]
        data: Vec<u8>,
    },
    /// A citation of the text block `index`.
    Citation {
        index: u32,
        citation: Citation,
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
        #[serde(default, skip_serializing_if = "Served::is_empty")]
        served: Served,
    },
}

impl StreamEvent {
    /// True for events that carry model output (the first of these is the first token).
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            Self::TextDelta { .. }
                | Self::ToolUseStart { .. }
                | Self::ToolUseDelta { .. }
                | Self::ReasoningDelta { .. }
                | Self::RedactedReasoning { .. }
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
