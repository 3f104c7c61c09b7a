//! Anthropic extended thinking through Converse: `additionalModelRequestFields.thinking`,
//! the rules Anthropic's API enforces with it, the reasoning the model writes, and the
//! signatures that let the next turn prove its reasoning blocks came from the model.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::ModelSpec;
use crate::content::At;
use crate::converse::{ContentBlock, InferenceConfig, Message, Role};
use crate::error::BedrockError;
use crate::generate::{Prng, reply_tokens};
use crate::output::split_tokens;

/// Keyed into every signature: a client cannot make a valid one without it, and the
/// emulator can check one without remembering what it sent.
const SIGNING_SECRET: &[u8] = b"bedrock-emulator thinking signature v1 7f3c9a1e5d";

/// Fewest thinking tokens Anthropic accepts as a budget.
pub const MIN_BUDGET_TOKENS: i64 = 1024;

/// Keys Anthropic models accept in `additionalModelRequestFields` besides `thinking`.
const ANTHROPIC_FIELDS: [&str; 2] = ["top_k", "anthropic_beta"];

const DOCS: &str = "Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking";

/// An error Anthropic's API returns, as Bedrock passes it on.
pub fn model_error(message: impl std::fmt::Display) -> BedrockError {
    BedrockError::validation(format!(
        "The model returned the following errors: {message}"
    ))
}

/// The signature of a reasoning text: base64 of SHA-256 over the secret and the text.
pub fn sign(text: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(SIGNING_SECRET);
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

pub fn verify(text: &str, signature: &str) -> bool {
    sign(text) == signature
}

/// What `additionalModelRequestFields` asks of the model.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelFields {
    /// Thinking budget, when thinking is enabled.
    pub thinking: Option<u32>,
    pub top_k: bool,
}

/// Checks `additionalModelRequestFields` against what the model takes: Anthropic models
/// refuse keys their API does not know, and only reasoning models know `thinking`.
pub fn model_fields(fields: Option<&Value>, spec: &ModelSpec) -> Result<ModelFields, BedrockError> {
    let Some(fields) = fields else {
        return Ok(ModelFields::default());
    };
    let Some(obj) = fields.as_object() else {
        return Err(model_error(
            "Malformed input request: #: expected type: JSONObject, please reformat your input and try again.",
        ));
    };
    let anthropic = spec.provider == "anthropic";
    for key in obj.keys() {
        let allowed = if key == "thinking" {
            spec.reasoning
        } else {
            // Other providers' fields pass through unchecked, as before.
            !anthropic || ANTHROPIC_FIELDS.contains(&key.as_str())
        };
        if !allowed {
            return Err(model_error(format!(
                "{key}: Extra inputs are not permitted"
            )));
        }
    }
    let thinking = match obj.get("thinking") {
        None => None,
        Some(t) => parse_thinking(t)?,
    };
    Ok(ModelFields {
        thinking,
        top_k: obj.contains_key("top_k"),
    })
}

fn parse_thinking(thinking: &Value) -> Result<Option<u32>, BedrockError> {
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok(None),
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .ok_or_else(|| model_error("thinking.enabled.budget_tokens: Field required"))?
                .as_i64()
                .ok_or_else(|| {
                    model_error("thinking.enabled.budget_tokens: Input should be a valid integer")
                })?;
            if budget < MIN_BUDGET_TOKENS {
                return Err(model_error(format!(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET_TOKENS}"
                )));
            }
            Ok(Some(u32::try_from(budget).unwrap_or(u32::MAX)))
        }
        Some(other) => Err(model_error(format!(
            "thinking: Input tag '{other}' found using 'type' does not match any of the expected tags: 'disabled', 'enabled'"
        ))),
        None => Err(model_error(
            "thinking: Unable to extract tag using discriminator 'type'",
        )),
    }
}

/// Anthropic's rules for a request with thinking enabled.
pub fn check_thinking(
    budget: u32,
    max_tokens: u32,
    inference: &InferenceConfig,
    forced_tool: bool,
    top_k: bool,
) -> Result<(), BedrockError> {
    if budget >= max_tokens {
        return Err(model_error(format!(
            "`max_tokens` must be greater than `thinking.budget_tokens`. {DOCS}#max-tokens-and-context-window-size"
        )));
    }
    if inference.temperature.is_some_and(|t| t != 1.0) {
        return Err(model_error(format!(
            "`temperature` may only be set to 1 when thinking is enabled. {DOCS}#important-considerations-when-using-extended-thinking"
        )));
    }
    // Anthropic lets top_p stay between 0.95 and 1 with thinking.
    if inference.top_p.is_some_and(|p| p < 0.95) {
        return Err(model_error(format!(
            "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. {DOCS}#important-considerations-when-using-extended-thinking"
        )));
    }
    if top_k {
        return Err(model_error(format!(
            "`top_k` must be unset when thinking is enabled. {DOCS}#important-considerations-when-using-extended-thinking"
        )));
    }
    if forced_tool {
        return Err(model_error(
            "Thinking may not be enabled when tool_choice forces tool use.",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
enum ReasoningWire {
    ReasoningText(ReasoningTextWire),
    RedactedContent(#[allow(dead_code)] String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasoningTextWire {
    text: String,
    #[serde(default)]
    signature: Option<String>,
}

/// A `reasoningContent` block sent back in the conversation. Anthropic models check its
/// signature; redacted reasoning is taken as it is. Returns the text it adds to the input.
pub fn history_block(block: &Value, at: &At, anthropic: bool) -> Result<String, BedrockError> {
    let reasoning: ReasoningWire = serde_json::from_value(block.clone()).map_err(|e| {
        BedrockError::validation(format!(
            "Malformed input request: {}.reasoningContent: {e}, please reformat your input and try again.",
            at.dotted
        ))
    })?;
    match reasoning {
        ReasoningWire::ReasoningText(r) => {
            let signed = r.signature.as_deref().is_some_and(|s| verify(&r.text, s));
            if anthropic && !signed {
                return Err(model_error(format!(
                    "{}: Invalid `signature` in `thinking` block",
                    at.dotted
                )));
            }
            Ok(r.text)
        }
        ReasoningWire::RedactedContent(_) => Ok(String::new()),
    }
}

/// Anthropic's name of a content block's type, for its error messages.
fn anthropic_type(block: Option<&ContentBlock>) -> &'static str {
    match block {
        Some(ContentBlock::Text(_)) => "text",
        Some(ContentBlock::ToolUse(_)) => "tool_use",
        Some(ContentBlock::ToolResult(_)) => "tool_result",
        Some(ContentBlock::Image(_)) => "image",
        Some(ContentBlock::Document(_)) => "document",
        Some(ContentBlock::ReasoningContent(_)) => "thinking",
        Some(_) | None => "unknown",
    }
}

/// With thinking on, the last assistant message that calls tools must open with its
/// reasoning, which the caller has to send back as it got it.
pub fn check_final_assistant(messages: &[Message]) -> Result<(), BedrockError> {
    let Some((n, last)) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.role == Role::Assistant)
    else {
        return Ok(());
    };
    if !last
        .content
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolUse(_)))
    {
        return Ok(());
    }
    match last.content.first() {
        Some(ContentBlock::ReasoningContent(_)) => Ok(()),
        other => Err(model_error(format!(
            "messages.{n}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. {DOCS}",
            anthropic_type(other)
        ))),
    }
}

/// The model's reasoning for a request: deterministic, within the budget, and signed.
pub fn think(model_id: &str, fingerprint: &[u8], budget: u32) -> (Vec<String>, String) {
    let mut rng = Prng::from_parts(&[b"thinking", model_id.as_bytes(), fingerprint]);
    let mut tokens = split_tokens("Let me think about what is being asked. ");
    tokens.extend(reply_tokens(&mut rng, 20, 60));
    tokens.truncate(budget as usize);
    let signature = sign(&tokens.concat());
    (tokens, signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signatures_verify_only_their_text() {
        let s = sign("a thought");
        assert!(verify("a thought", &s));
        assert!(!verify("a thought!", &s));
        assert!(!verify("a thought", "Zm9yZ2Vk"));
    }

    #[test]
    fn thinking_needs_a_reasoning_model_and_a_budget() {
        let mut spec = ModelSpec {
            provider: "anthropic".into(),
            ..ModelSpec::default()
        };
        let enabled = json!({"thinking": {"type": "enabled", "budget_tokens": 2048}});
        let e = model_fields(Some(&enabled), &spec).unwrap_err();
        assert!(
            e.message
                .contains("thinking: Extra inputs are not permitted")
        );
        spec.reasoning = true;
        assert_eq!(
            model_fields(Some(&enabled), &spec).unwrap().thinking,
            Some(2048)
        );
        let small = json!({"thinking": {"type": "enabled", "budget_tokens": 100}});
        assert!(model_fields(Some(&small), &spec).is_err());
        let other = json!({"bogus": 1});
        assert!(model_fields(Some(&other), &spec).is_err());
        let top_k = json!({"top_k": 5});
        assert!(model_fields(Some(&top_k), &spec).unwrap().top_k);
    }
}
