//! The model port: what Quarry asks a model, what it gets back, and the trait an adapter
//! (Bedrock through the AWS SDK, or a fake in unit tests) implements.
//!
//! The types mirror Bedrock's Converse API, which every Bedrock chat model speaks, without
//! depending on the SDK.

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod error;
mod options;
mod served;

pub use self::error::{ModelError, ModelErrorKind};
pub use self::options::{Effort, ReasoningRequest, ServiceTier};
pub use self::served::{Citation, CitationLocation, CitationUnit, GuardrailOutcome, Served};
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
    /// Sample from the k likeliest tokens (models with `top_k`: Claude, Nova).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
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
    /// Anthropic beta features asked for (`anthropic-beta`), for Claude models only: the ones
    /// Bedrock accepts pass through `additionalModelRequestFields.anthropic_beta`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anthropic_beta: Vec<String>,
    /// Converse `additionalModelRequestFields`, in the target model's own terms: set per
    /// model by [`crate::invoke::request_for`], never by callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_fields: Option<Value>,
    /// The region the call goes to (`None`: the client's own). Set per attempt from the
    /// target; never part of what the request says, so never in a cache key.
    #[serde(skip)]
    pub region: Option<String>,
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
