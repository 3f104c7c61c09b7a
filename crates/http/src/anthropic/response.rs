//! The `message` object of a whole answer, and Anthropic's error shape.

use quarry_core::Error;
use quarry_core::model::{ContentBlock, StopReason, TokenUsage};
use quarry_core::service::Answer;
use serde::Serialize;
use serde_json::{Value, json};

use crate::native::FallbackOut;

/// Anthropic's stop reason for Bedrock's.
pub fn stop_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => "refusal",
        _ => "end_turn",
    }
}

/// `usage` as Anthropic reports it: input excludes cache reads and writes.
pub fn usage(u: &TokenUsage) -> Value {
    json!({
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
    })
}

/// One content block as Anthropic writes it; `None` for blocks an answer never carries.
pub fn block(b: &ContentBlock) -> Option<Value> {
    use base64::Engine;
    Some(match b {
        ContentBlock::Text(t) => json!({"type": "text", "text": t}),
        ContentBlock::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        ContentBlock::Reasoning { text, signature } => json!({
            "type": "thinking", "thinking": text, "signature": signature.clone().unwrap_or_default(),
        }),
        ContentBlock::RedactedReasoning(data) => json!({
            "type": "redacted_thinking",
            "data": base64::engine::general_purpose::STANDARD.encode(data),
        }),
        _ => return None,
    })
}

/// The `message` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<Value>,
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
    pub usage: Value,
    /// Quarry's own fields: cost, cache hit, fallbacks.
    pub quarry: Value,
}

/// The message ID of a request (`msg_...`).
pub fn message_id(request_id: &str) -> String {
    let id: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("msg_{id}")
}

impl Message {
    /// `model` is the name the caller asked for (Anthropic's clients match it).
    pub fn new(request_id: &str, model: &str, answer: &Answer) -> Self {
        // Reasoning first, then the answer, as Claude writes them.
        let mut content: Vec<Value> = answer
            .content
            .iter()
            .filter(|b| {
                matches!(
                    b,
                    ContentBlock::Reasoning { .. } | ContentBlock::RedactedReasoning(_)
                )
            })
            .filter_map(block)
            .collect();
        let mut text_cited = false;
        for b in &answer.content {
            if matches!(
                b,
                ContentBlock::Reasoning { .. } | ContentBlock::RedactedReasoning(_)
            ) {
                continue;
            }
            if let Some(mut v) = block(b) {
                if !text_cited && !answer.citations.is_empty() && v["type"] == "text" {
                    v["citations"] = citations(answer);
                    text_cited = true;
                }
                content.push(v);
            }
        }
        Self {
            id: message_id(request_id),
            kind: "message",
            role: "assistant",
            model: model.to_owned(),
            content,
            stop_reason: stop_reason(&answer.stop_reason),
            stop_sequence: None,
            usage: usage(&answer.usage),
            quarry: {
                let mut quarry = json!({
                    "model": answer.model,
                    "cost_usd": answer.cost.map(|c| c.to_usd_string()),
                    "cached": answer.cached,
                    "fallbacks": answer.fallbacks.iter().map(FallbackOut::from).collect::<Vec<_>>(),
                });
                if let Some(fields) = quarry.as_object_mut() {
                    crate::sources::extend(
                        fields,
                        answer.retrieval.as_ref(),
                        answer.grounding.as_ref(),
                    );
                }
                quarry
            },
        }
    }
}

/// Citations as Anthropic writes them (`char_location`, `page_location`,
/// `content_block_location`).
pub fn citations(answer: &Answer) -> Value {
    use quarry_core::model::CitationUnit;
    Value::Array(
        answer
            .citations
            .iter()
            .map(|c| {
                let mut v = json!({"cited_text": c.quote, "document_title": c.title});
                if let Some(l) = &c.location {
                    let (kind, start, end) = match l.unit {
                        CitationUnit::Char => {
                            ("char_location", "start_char_index", "end_char_index")
                        }
                        CitationUnit::Page => {
                            ("page_location", "start_page_number", "end_page_number")
                        }
                        CitationUnit::Chunk => (
                            "content_block_location",
                            "start_block_index",
                            "end_block_index",
                        ),
                    };
                    v["type"] = json!(kind);
                    v["document_index"] = json!(l.document_index);
                    v[start] = json!(l.start);
                    v[end] = json!(l.end);
                }
                v
            })
            .collect(),
    )
}

/// Anthropic's error type for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}, "request_id"}`.
pub fn error_body(e: &Error, request_id: &str) -> Value {
    let message = match (e, e.field()) {
        (Error::Internal(_), _) => {
            "internal error; the request id identifies it in the logs".to_owned()
        }
        // Anthropic's shape has no `param`: the field at fault leads the message.
        (_, Some(field)) if !e.to_string().contains(field) => format!("{field}: {e}"),
        _ => e.to_string(),
    };
    json!({
        "type": "error",
        "error": {"type": error_type(e.status_code()), "message": message},
        "request_id": request_id,
    })
}
