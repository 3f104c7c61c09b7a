//! Quarry's native chat API (`POST /v1/chat`, and `POST /v1/cache/lookup`, which takes the
//! same body): request and response types.
//!
//! Request: `prompt`, `version` | `label`, `ab_key`, `variables`, `messages`, `system`,
//! `model` | `tier`, `max_tokens`, `temperature`, `top_p`, `stop`, `response_format` (a JSON
//! Schema), `cache` (`auto` | `bypass` | `refresh`), `stream`, `tags`.
//! Response: `id`, `output` (`text`, and `json` when a schema applies), `model`,
//! `fallbacks`, `usage`, `cost_usd` (decimal string), `cached`, `prompt`, `latency_ms`.
//!
//! Streamed (`"stream": true`), the answer is Server-Sent Events: `start` with the first
//! token ([`StreamStart`]), `delta` per piece of text ([`StreamDelta`]), then `done` with
//! what the whole response carries ([`StreamDone`]) or `error` with the envelope. Unlike the
//! whole response, `done` always carries every key, `null` when there is nothing to say.

use std::collections::BTreeMap;

use quarry_core::Error;
use quarry_core::chat::{ChatInput, PromptRef, PromptUsed};
use quarry_core::guardrails::Findings;
use quarry_core::invoke::Fallback;
use quarry_core::model::{
    Citation, ContentBlock, Effort, InferenceParams, Message, ReasoningRequest, Role, ServiceTier,
    TokenUsage,
};
use quarry_core::prompts::PromptSelector;
use quarry_core::routing::RouteSpec;
use quarry_core::service::{Answer, CacheMode, StreamSummary};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod parts;

pub use self::parts::{Content, Part};

/// `cache`: `auto` (the default: cached when safe), `bypass`, `refresh`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheParam {
    #[default]
    Auto,
    Bypass,
    Refresh,
}

impl From<CacheParam> for CacheMode {
    fn from(c: CacheParam) -> Self {
        match c {
            CacheParam::Auto => CacheMode::Auto,
            CacheParam::Bypass => CacheMode::Bypass,
            CacheParam::Refresh => CacheMode::Refresh,
        }
    }
}

/// `stop` may be one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// `reasoning`: an effort or a budget of reasoning tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasoningParam {
    pub effort: Option<Effort>,
    pub budget_tokens: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InMessage {
    pub role: Role,
    pub content: Content,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub prompt: Option<String>,
    pub version: Option<u64>,
    pub label: Option<String>,
    pub ab_key: Option<String>,
    #[serde(default)]
    pub variables: Map<String, Value>,
    #[serde(default)]
    pub messages: Vec<InMessage>,
    pub system: Option<String>,
    pub model: Option<String>,
    pub tier: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<Stop>,
    pub response_format: Option<Value>,
    #[serde(default)]
    pub cache: CacheParam,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub reasoning: Option<ReasoningParam>,
    /// `auto` (the routing's), `default`, `flex` or `priority`.
    pub service_tier: Option<String>,
    /// `standard` or `optimized`.
    pub latency: Option<String>,
}

/// Request size limits (configurable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_messages: usize,
    pub max_total_chars: usize,
}

/// Checks shared by both chat APIs: parameter ranges and size limits.
pub fn check_params(params: &InferenceParams) -> Result<(), Error> {
    if let Some(t) = params.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(Error::bad_request(
            "temperature",
            format!("temperature must be between 0 and 1, got {t}"),
        ));
    }
    if let Some(p) = params.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(Error::bad_request(
            "top_p",
            format!("top_p must be between 0 and 1, got {p}"),
        ));
    }
    if params.max_tokens == Some(0) {
        return Err(Error::bad_request(
            "max_tokens",
            "max_tokens must be at least 1",
        ));
    }
    if params.stop.len() > 4 || params.stop.iter().any(String::is_empty) {
        return Err(Error::bad_request(
            "stop",
            "give at most 4 non-empty stop sequences",
        ));
    }
    Ok(())
}

pub fn check_sizes(options: &Limits, messages: usize, chars: usize) -> Result<(), Error> {
    if messages > options.max_messages {
        return Err(Error::bad_request(
            "messages",
            format!(
                "{messages} messages exceed the limit of {}",
                options.max_messages
            ),
        ));
    }
    if chars > options.max_total_chars {
        return Err(Error::PayloadTooLarge(format!(
            "the request's text ({chars} characters) exceeds the limit of {}",
            options.max_total_chars
        )));
    }
    Ok(())
}

impl ChatRequest {
    /// The domain input, after the checks that need no configuration.
    pub fn into_input(self, options: &Limits) -> Result<(ChatInput, CacheMode, bool), Error> {
        if self.version.is_some() && self.label.is_some() {
            return Err(Error::bad_request(
                "version",
                "give 'version' or 'label', not both",
            ));
        }
        if self.model.is_some() && self.tier.is_some() {
            return Err(Error::bad_request(
                "model",
                "give 'model' or 'tier', not both",
            ));
        }
        if self.prompt.is_none()
            && (self.version.is_some() || self.label.is_some() || self.ab_key.is_some())
        {
            return Err(Error::bad_request(
                "prompt",
                "'version', 'label' and 'ab_key' need a 'prompt'",
            ));
        }
        if let Some(schema) = &self.response_format
            && !schema.is_object()
        {
            return Err(Error::bad_request(
                "response_format",
                "response_format must be a JSON Schema object",
            ));
        }
        let chars: usize = self
            .messages
            .iter()
            .map(|m| m.content.chars())
            .sum::<usize>()
            + self.system.as_ref().map_or(0, String::len)
            + self
                .variables
                .values()
                .map(|v| v.to_string().len())
                .sum::<usize>();
        check_sizes(options, self.messages.len(), chars)?;
        let params = InferenceParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop.map(Stop::into_vec).unwrap_or_default(),
            top_k: None,
        };
        check_params(&params)?;
        let selector = match (self.version, self.label) {
            (Some(v), _) => Some(PromptSelector::Version(v)),
            (None, Some(l)) => Some(PromptSelector::Label(l)),
            _ => None,
        };
        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                Ok(Message {
                    role: m.role,
                    content: m.content.into_blocks(&format!("messages[{i}]"))?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if let Some(r) = &self.reasoning
            && r.budget_tokens.is_some_and(|b| b < 1_024)
        {
            return Err(Error::bad_request(
                "reasoning.budget_tokens",
                "a reasoning budget is at least 1024 tokens",
            ));
        }
        let reasoning = self
            .reasoning
            .filter(|r| r.effort.is_some() || r.budget_tokens.is_some())
            .map(|r| ReasoningRequest {
                effort: r.effort,
                budget_tokens: r.budget_tokens,
            });
        let input = ChatInput {
            prompt: self.prompt.map(|name| PromptRef {
                name,
                selector,
                ab_key: self.ab_key,
            }),
            variables: self.variables,
            system: self.system.into_iter().collect(),
            messages,
            route: self
                .tier
                .map(RouteSpec::Tier)
                .or(self.model.map(RouteSpec::Model)),
            params,
            tools: Vec::new(),
            tool_choice: None,
            output_schema: self.response_format,
            tags: self.tags,
            reasoning,
            service_tier: crate::openai::fields::tier_of(self.service_tier.as_deref())?,
            latency_optimized: crate::openai::fields::latency_of(self.latency.as_deref())?,
            single_tool_call: false,
            anthropic_beta: Vec::new(),
            system_cache_point: false,
        };
        Ok((input, self.cache.into(), self.stream))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub total_tokens: u64,
}

impl From<TokenUsage> for Usage {
    fn from(u: TokenUsage) -> Self {
        Self {
            input_tokens: u.input,
            output_tokens: u.output,
            cache_read_tokens: u.cache_read,
            cache_write_tokens: u.cache_write,
            total_tokens: u.total(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// The model's reasoning, when it reasoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// The reasoning as parts to send back, signed, in the next turn's assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasoning_parts: Vec<Part>,
    /// Where the answer cites the request's documents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Citation>,
}

fn reasoning_parts(blocks: &[ContentBlock]) -> Vec<Part> {
    blocks.iter().filter_map(Part::of_block).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub model: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptInfo {
    pub name: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    pub output: Output,
    /// The model that answered (as invoked: ID, profile or ARN).
    pub model: String,
    pub stop_reason: String,
    pub fallbacks: Vec<FallbackOut>,
    pub usage: Usage,
    /// Decimal USD; null when the model has no price (see `cost_status`).
    pub cost_usd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_status: Option<String>,
    pub cached: bool,
    pub prompt: Option<PromptInfo>,
    pub latency_ms: Latency,
    /// What the guardrails did (kinds and counts, never the matched text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Findings>,
    /// The tier a budget switched this request to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_to: Option<String>,
    /// The Bedrock service tier that served the answer, when Bedrock said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// The passages the model was given, for a prompt that retrieves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<quarry_core::retrieval::Source>,
    /// What retrieval did (`knowledge_base_id`, `cached`, `degraded`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Value>,
    /// The grounding check's verdict (scores, thresholds, `passed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounding: Option<quarry_core::retrieval::GroundingResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackOut {
    pub model: String,
    pub reason: String,
    pub attempts: u32,
}

impl From<&PromptUsed> for PromptInfo {
    fn from(p: &PromptUsed) -> Self {
        Self {
            name: p.name.clone(),
            version: p.version,
            label: p.label.clone(),
        }
    }
}

impl From<&Fallback> for FallbackOut {
    fn from(f: &Fallback) -> Self {
        Self {
            model: f.model.clone(),
            reason: f.reason.clone(),
            attempts: f.attempts,
        }
    }
}

/// The response body of an answered request.
pub fn response(id: &str, answer: &Answer, total_ms: u64) -> ChatResponse {
    ChatResponse {
        id: id.to_owned(),
        output: Output {
            text: answer.text(),
            json: answer.json.clone(),
            reasoning: answer.reasoning(),
            reasoning_parts: reasoning_parts(&answer.content),
            citations: answer.citations.clone(),
        },
        model: answer.model.clone(),
        stop_reason: answer.stop_reason.as_str().to_owned(),
        fallbacks: answer.fallbacks.iter().map(FallbackOut::from).collect(),
        usage: answer.usage.into(),
        cost_usd: answer.cost.map(|c| c.to_usd_string()),
        cost_status: answer.cost.is_none().then(|| "unpriced".to_owned()),
        cached: answer.cached,
        prompt: answer.prompt.as_ref().map(PromptInfo::from),
        latency_ms: Latency {
            model: answer.model_latency_ms,
            total: total_ms,
        },
        guardrails: (!answer.guardrails.is_empty()).then(|| answer.guardrails.clone()),
        degraded_to: answer.degraded_to.clone(),
        service_tier: answer.served.service_tier,
        sources: crate::sources::sources(answer.retrieval.as_ref()).to_vec(),
        retrieval: answer
            .retrieval
            .as_ref()
            .map(|r| serde_json::json!(crate::sources::RetrievalSummary::of(r))),
        grounding: answer.grounding.clone(),
    }
}

/// `event: start`: what is known when the first token arrives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStart<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub fallbacks: &'a [FallbackOut],
    pub cached: bool,
    pub prompt: Option<&'a PromptInfo>,
    pub degraded_to: Option<&'a str>,
    /// The passages the model was given (known before the first token).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub sources: &'a [quarry_core::retrieval::Source],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<crate::sources::RetrievalSummary<'a>>,
}

/// `event: delta`: the next piece of text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamDelta<'a> {
    pub text: &'a str,
}

/// `event: done`: the whole response's fields, the text being everything the deltas carried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamDone<'a> {
    pub id: &'a str,
    pub output: StreamOutput<'a>,
    pub model: &'a str,
    pub stop_reason: &'a str,
    pub fallbacks: &'a [FallbackOut],
    pub usage: Usage,
    pub cost_usd: Option<String>,
    pub cost_status: Option<&'static str>,
    pub cached: bool,
    pub prompt: Option<&'a PromptInfo>,
    pub latency_ms: Latency,
    pub guardrails: Option<&'a Findings>,
    pub degraded_to: Option<&'a str>,
    pub service_tier: Option<ServiceTier>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub sources: &'a [quarry_core::retrieval::Source],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<crate::sources::RetrievalSummary<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grounding: Option<&'a quarry_core::retrieval::GroundingResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamOutput<'a> {
    pub text: &'a str,
    pub json: Option<&'a Value>,
    /// The reasoning as parts to send back next turn (its text came as `reasoning` events).
    pub reasoning_parts: Vec<Part>,
    pub citations: &'a [Citation],
}

impl<'a> StreamDone<'a> {
    /// `start` is what the stream opened with, `text` all its deltas, `total_ms` the time
    /// since the request arrived.
    pub fn new(
        start: &StreamStart<'a>,
        text: &'a str,
        summary: &'a StreamSummary,
        total_ms: u64,
    ) -> Self {
        Self {
            id: start.id,
            output: StreamOutput {
                text,
                json: summary.json.as_ref(),
                reasoning_parts: reasoning_parts(&summary.reasoning),
                citations: &summary.citations,
            },
            model: start.model,
            stop_reason: summary.stop_reason.as_str(),
            fallbacks: start.fallbacks,
            usage: summary.usage.into(),
            cost_usd: summary.cost.map(|c| c.to_usd_string()),
            cost_status: summary.cost.is_none().then_some("unpriced"),
            cached: start.cached,
            prompt: start.prompt,
            latency_ms: Latency {
                model: summary.model_latency_ms,
                total: total_ms,
            },
            guardrails: (!summary.guardrails.is_empty()).then_some(&summary.guardrails),
            degraded_to: start.degraded_to,
            service_tier: summary.served.service_tier,
            sources: start.sources,
            retrieval: start.retrieval.clone(),
            grounding: summary.grounding.as_ref(),
        }
    }
}
