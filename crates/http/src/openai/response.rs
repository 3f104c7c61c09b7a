//! What `POST /v1/chat/completions` and `GET /v1/models` answer, as the OpenAI clients parse
//! it: the `chat.completion` object, the `chat.completion.chunk`s of a stream, the model list.
//!
//! Keys OpenAI always sends are always sent, `null` when empty (`refusal`, `logprobs`,
//! `system_fingerprint`, a chunk's `finish_reason`); keys OpenAI leaves out when empty
//! (`tool_calls`, a chunk's `usage`) are left out. Quarry's own fields sit under `quarry`.

use quarry_core::model::{Citation, ContentBlock, Served, ServiceTier, StopReason, TokenUsage};
use quarry_core::service::Answer;
use serde::Serialize;
use serde_json::{Value, json};

use crate::native::FallbackOut;

pub fn finish_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => "content_filter",
        _ => "stop",
    }
}

/// The tier an answer is said to be served on when Bedrock does not say: its standard one.
const SERVICE_TIER: &str = "default";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn completion_id(request_id: &str) -> String {
    format!("chatcmpl-{}", request_id.replace(['=', '/', '+'], ""))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

impl From<&TokenUsage> for Usage {
    /// OpenAI counts cached prompt tokens (read or written) as prompt tokens.
    fn from(u: &TokenUsage) -> Self {
        let prompt = u.input + u.cache_read + u.cache_write;
        Self {
            prompt_tokens: prompt,
            completion_tokens: u.output,
            total_tokens: prompt + u.output,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cache_read,
            },
        }
    }
}

/// The `chat.completion` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion<'a> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [Choice<'a>; 1],
    pub usage: Usage,
    pub system_fingerprint: Option<&'static str>,
    /// The service tier that served the answer, as Bedrock reported it.
    pub service_tier: &'static str,
    /// Quarry's cost of this answer (`null` when the model has no price), beside OpenAI's
    /// fields: clients read it without knowing the `quarry` extension.
    pub cost_usd: Option<String>,
    /// Served from Quarry's response cache.
    pub cached: bool,
    /// The passages the model was given, for a prompt that retrieves (also in `quarry`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub sources: &'a [quarry_core::retrieval::Source],
    pub quarry: Extras,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice<'a> {
    pub index: u32,
    pub message: AssistantMessage<'a>,
    pub finish_reason: &'static str,
    pub logprobs: Option<()>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage<'a> {
    pub role: &'static str,
    /// `null` when the model only called tools.
    pub content: Option<String>,
    pub refusal: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall<'a>>,
    /// Legacy function calling's one call (when the request used `functions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall<'a>>,
    /// The model's reasoning (the field OpenAI-compatible servers use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The reasoning blocks with their signatures: sent back on the next turn's assistant
    /// message, so a conversation with reasoning continues.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<Value>,
    /// Where the answer cites the request's documents.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub citations: &'a [Citation],
}

/// Reasoning blocks as OpenAI-compatible clients carry them back.
pub fn thinking_blocks(blocks: &[ContentBlock]) -> Vec<Value> {
    use base64::Engine;
    blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Reasoning {
                text,
                signature: Some(signature),
            } => Some(json!({"type": "thinking", "thinking": text, "signature": signature})),
            ContentBlock::RedactedReasoning(data) => Some(json!({
                "type": "redacted_thinking",
                "data": base64::engine::general_purpose::STANDARD.encode(data),
            })),
            _ => None,
        })
        .collect()
}

/// The service tier that served an answer (`default` when Bedrock did not say).
pub fn tier_name(served: &Served) -> &'static str {
    served
        .service_tier
        .map_or(SERVICE_TIER, ServiceTier::as_str)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall<'a> {
    pub name: &'a str,
    /// The arguments as a JSON string, as OpenAI sends them.
    pub arguments: String,
}

/// Quarry's own fields on a whole answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extras {
    pub cost_usd: Option<String>,
    pub cached: bool,
    pub fallbacks: Vec<FallbackOut>,
    /// Retrieval's `sources`, `retrieval` and `grounding` (see [`crate::sources`]).
    #[serde(flatten)]
    pub retrieval: serde_json::Map<String, Value>,
}

impl Extras {
    pub fn new(
        cost: Option<quarry_core::pricing::MicroUsd>,
        cached: bool,
        fallbacks: Vec<FallbackOut>,
        retrieval: Option<&quarry_core::retrieval::RetrievalOutcome>,
        grounding: Option<&quarry_core::retrieval::GroundingResult>,
    ) -> Self {
        let mut fields = serde_json::Map::new();
        crate::sources::extend(&mut fields, retrieval, grounding);
        Self {
            cost_usd: cost.map(|c| c.to_usd_string()),
            cached,
            fallbacks,
            retrieval: fields,
        }
    }
}

impl<'a> Completion<'a> {
    /// The answer in legacy function calling's shape: the first tool call is the
    /// message's `function_call`, and the finish reason says `function_call`.
    pub fn in_legacy_shape(mut self) -> Self {
        let [choice] = &mut self.choices;
        let message = &mut choice.message;
        if !message.tool_calls.is_empty() {
            let first = message.tool_calls.remove(0);
            message.tool_calls.clear();
            message.function_call = Some(first.function);
        }
        if choice.finish_reason == "tool_calls" {
            choice.finish_reason = "function_call";
        }
        self
    }

    pub fn new(request_id: &str, answer: &'a Answer) -> Self {
        let text = answer.text();
        let tool_calls: Vec<ToolCall<'a>> = answer
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, name, input } => Some(ToolCall {
                    id,
                    kind: "function",
                    function: FunctionCall {
                        name,
                        arguments: input.to_string(),
                    },
                }),
                _ => None,
            })
            .collect();
        let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
        Self {
            id: completion_id(request_id),
            object: "chat.completion",
            created: now_secs(),
            model: &answer.model,
            choices: [Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    refusal: None,
                    tool_calls,
                    function_call: None,
                    reasoning_content: answer.reasoning(),
                    thinking_blocks: thinking_blocks(&answer.content),
                    citations: &answer.citations,
                },
                finish_reason: finish_reason(&answer.stop_reason),
                logprobs: None,
            }],
            usage: (&answer.usage).into(),
            system_fingerprint: None,
            service_tier: tier_name(&answer.served),
            cost_usd: answer.cost.map(|c| c.to_usd_string()),
            cached: answer.cached,
            sources: crate::sources::sources(answer.retrieval.as_ref()),
            quarry: Extras::new(
                answer.cost,
                answer.cached,
                answer.fallbacks.iter().map(FallbackOut::from).collect(),
                answer.retrieval.as_ref(),
                answer.grounding.as_ref(),
            ),
        }
    }
}

/// `GET /v1/models`: OpenAI's list, with Quarry's tiers beside the models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// `tier` or `model`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A tier's model chain, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

impl ModelEntry {
    pub fn tier(id: &str, chain: &[String]) -> Self {
        Self {
            id: id.to_owned(),
            object: "model",
            created: 0,
            owned_by: "quarry",
            kind: "tier",
            models: Some(chain.to_vec()),
        }
    }

    pub fn model(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            object: "model",
            created: 0,
            owned_by: "bedrock",
            kind: "model",
            models: None,
        }
    }
}

impl ModelList {
    pub fn new(data: Vec<ModelEntry>) -> Self {
        Self {
            object: "list",
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use quarry_core::guardrails::Findings;
    use quarry_core::invoke::Fallback;
    use quarry_core::pricing::MicroUsd;
    use quarry_core::service::PromptTrace;
    use serde_json::{Value, json};

    use super::*;
    use crate::openai::chunk::*;

    fn answer(content: Vec<ContentBlock>, stop_reason: StopReason) -> Answer {
        Answer {
            content,
            json: None,
            stop_reason,
            usage: TokenUsage {
                input: 10,
                output: 5,
                cache_read: 0,
                cache_write: 0,
                cache_write_1h: 0,
            },
            model: "us.m".into(),
            base_model: "m".into(),
            fallbacks: vec![Fallback {
                model: "other".into(),
                reason: "throttled".into(),
                attempts: 2,
            }],
            cost: Some(MicroUsd(1500)),
            cached: false,
            prompt: None,
            model_latency_ms: 3,
            guardrails: Findings::default(),
            degraded_to: None,
            model_calls: 1,
            prompt_trace: PromptTrace::default(),
            citations: Vec::new(),
            served: Default::default(),
            retrieval: None,
            grounding: None,
        }
    }

    /// Everything but `created`, which is the clock's.
    fn without_created(mut v: Value) -> Value {
        assert!(v["created"].as_u64().is_some_and(|c| c > 0), "{v}");
        v["created"] = json!(0);
        v
    }

    #[test]
    fn a_completion_on_the_wire() {
        let a = answer(
            vec![ContentBlock::Text("Hello".into())],
            StopReason::EndTurn,
        );
        assert_eq!(
            without_created(wire(Completion::new("r/1=", &a))),
            json!({
                "id": "chatcmpl-r1", "object": "chat.completion", "created": 0, "model": "us.m",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello", "refusal": null},
                    "finish_reason": "stop", "logprobs": null,
                }],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 0}},
                "system_fingerprint": null,
                "cost_usd": a.cost.map(|c| c.to_usd_string()), "cached": false, "service_tier": "default",
                "quarry": {"cost_usd": a.cost.map(|c| c.to_usd_string()), "cached": false, "fallbacks": [{"model": "other", "reason": "throttled", "attempts": 2}]},
            })
        );
    }

    #[test]
    fn tool_calls_leave_content_null() {
        let a = answer(
            vec![ContentBlock::ToolUse {
                id: "t1".into(),
                name: "get_weather".into(),
                input: json!({"city": "Oslo"}),
            }],
            StopReason::ToolUse,
        );
        let v = wire(Completion::new("r", &a));
        assert_eq!(
            v["choices"][0]["message"],
            json!({
                "role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}],
            })
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    fn wire(v: impl Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    const HEAD: ChunkHead<'static> = ChunkHead {
        id: "chatcmpl-1",
        created: 7,
        model: "m",
        service_tier: "default",
    };

    fn chunk(delta: Value, finish: Value) -> Value {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
            "service_tier": "default",
        })
    }

    #[test]
    fn chunks_on_the_wire() {
        assert_eq!(
            wire(HEAD.chunk(Delta::opening(), None)),
            chunk(json!({"role": "assistant", "content": ""}), Value::Null)
        );
        assert_eq!(
            wire(HEAD.chunk(Delta::text("hi"), None)),
            chunk(json!({"content": "hi"}), Value::Null)
        );
        assert_eq!(
            wire(HEAD.chunk(Delta::tool_start(1, "t1", "get_weather"), None)),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null
            )
        );
        assert_eq!(
            wire(HEAD.chunk(Delta::tool_arguments(1, "{\"city\""), None)),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\""}}]}),
                Value::Null
            )
        );
        assert_eq!(
            wire(HEAD.chunk(Delta::default(), Some("stop"))),
            chunk(json!({}), json!("stop"))
        );
        let usage = TokenUsage {
            input: 10,
            output: 5,
            cache_read: 3,
            cache_write: 2,
            cache_write_1h: 0,
        };
        let extras = Extras::new(Some(MicroUsd(15)), false, Vec::new(), None, None);
        assert_eq!(
            wire(HEAD.usage(&usage, extras)),
            json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                "choices": [], "service_tier": "default",
                "usage": {"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20, "prompt_tokens_details": {"cached_tokens": 3}},
                "cost_usd": "0.000015", "cached": false,
                "quarry": {"cost_usd": "0.000015", "cached": false, "fallbacks": []},
            })
        );
    }

    #[test]
    fn models_on_the_wire() {
        let list = ModelList::new(vec![
            ModelEntry::tier("fast", &["a".to_owned(), "b".to_owned()]),
            ModelEntry::model("a"),
        ]);
        assert_eq!(
            wire(list),
            json!({"object": "list", "data": [
                {"id": "fast", "object": "model", "created": 0, "owned_by": "quarry", "type": "tier", "models": ["a", "b"]},
                {"id": "a", "object": "model", "created": 0, "owned_by": "bedrock", "type": "model"},
            ]})
        );
    }
}
