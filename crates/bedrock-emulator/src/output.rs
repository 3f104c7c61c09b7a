//! What the model "says": deterministic content for a normalised prompt.

use serde_json::Value;

use crate::converse::{Prompt, ToolChoice, ToolDef};
use crate::generate::{Prng, count_tokens, instance_of, reply_tokens, violation_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    GuardrailIntervened,
    ContentFiltered,
    MalformedModelOutput,
    MalformedToolUse,
    ModelContextWindowExceeded,
}

impl StopReason {
    /// Converse's name.
    pub fn converse(self) -> &'static str {
        match self {
            Self::EndTurn => "end_turn",
            Self::ToolUse => "tool_use",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::GuardrailIntervened => "guardrail_intervened",
            Self::ContentFiltered => "content_filtered",
            Self::MalformedModelOutput => "malformed_model_output",
            Self::MalformedToolUse => "malformed_tool_use",
            Self::ModelContextWindowExceeded => "model_context_window_exceeded",
        }
    }
}

#[derive(Debug, Clone)]
pub enum OutBlock {
    /// Text, as the tokens a stream sends one by one.
    Text(Vec<String>),
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

impl OutBlock {
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Text(tokens) => Some(tokens.concat()),
            Self::ToolUse { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub blocks: Vec<OutBlock>,
    pub stop_reason: StopReason,
    pub output_tokens: u32,
}

impl Output {
    pub fn from_text(text: &str, stop_reason: StopReason) -> Self {
        let tokens = split_tokens(text);
        Self {
            output_tokens: tokens.len() as u32,
            blocks: vec![OutBlock::Text(tokens)],
            stop_reason,
        }
    }

    pub fn text(&self) -> String {
        self.blocks.iter().filter_map(OutBlock::text).collect()
    }
}

/// Splits text into stream tokens: words with their trailing whitespace.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            current.push(c);
        } else {
            if current.ends_with(char::is_whitespace) {
                tokens.push(std::mem::take(&mut current));
            }
            current.push(c);
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Splits a JSON document into stream chunks of about four characters (one token each).
fn json_tokens(json: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

pub fn generate(prompt: &Prompt, model_id: &str, malformed: bool) -> Output {
    let mut rng = Prng::from_parts(&[model_id.as_bytes(), &prompt.fingerprint]);

    if let Some(tool) = chosen_tool(prompt) {
        let input = if malformed {
            violation_of(&tool.schema)
        } else {
            instance_of(&tool.schema, &mut rng)
        };
        let id = format!("tooluse_{}", base62(&mut rng, 22));
        let output_tokens = count_tokens(&input.to_string()).max(1);
        return Output {
            blocks: vec![OutBlock::ToolUse {
                id,
                name: tool.name.clone(),
                input,
            }],
            stop_reason: StopReason::ToolUse,
            output_tokens,
        };
    }

    let tokens = match &prompt.json_schema {
        Some(_) if malformed => split_tokens("Here is the JSON you asked for: {\"unfinished\": "),
        Some(schema) => json_tokens(&instance_of(schema, &mut rng).to_string()),
        None if prompt.answering_tool_result => {
            let mut t = split_tokens("Based on the tool result, ");
            t.extend(reply_tokens(&mut rng, 8, 30));
            t
        }
        None => reply_tokens(&mut rng, 12, 60),
    };
    let (tokens, stop_reason) = apply_limits(tokens, prompt);
    Output {
        output_tokens: tokens.len() as u32,
        blocks: vec![OutBlock::Text(tokens)],
        stop_reason,
    }
}

/// The tool the model calls: forced by toolChoice, or, with `auto`, a tool the last user
/// message names (so callers can steer the deterministic model into a tool call).
fn chosen_tool(prompt: &Prompt) -> Option<&ToolDef> {
    if prompt.tools.is_empty() {
        return None;
    }
    // A forced choice calls a tool whatever the conversation; `auto` answers a tool result
    // in text.
    match &prompt.tool_choice {
        ToolChoice::None => None,
        ToolChoice::Any => prompt.tools.first(),
        ToolChoice::Tool(name) => prompt.tools.iter().find(|t| &t.name == name),
        ToolChoice::Auto if prompt.answering_tool_result => None,
        ToolChoice::Auto => {
            let text = prompt.last_user_text.to_lowercase();
            prompt
                .tools
                .iter()
                .find(|t| text.contains(&t.name.to_lowercase()))
        }
    }
}

/// Stop sequences first, then maxTokens.
fn apply_limits(mut tokens: Vec<String>, prompt: &Prompt) -> (Vec<String>, StopReason) {
    let mut stop = StopReason::EndTurn;
    if !prompt.stop_sequences.is_empty() {
        let text = tokens.concat();
        let earliest = prompt
            .stop_sequences
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min();
        if let Some(cut) = earliest {
            tokens = split_tokens(&text[..cut]);
            stop = StopReason::StopSequence;
        }
    }
    if tokens.len() > prompt.max_tokens as usize {
        tokens.truncate(prompt.max_tokens as usize);
        stop = StopReason::MaxTokens;
    }
    (tokens, stop)
}

fn base62(rng: &mut Prng, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let text = "Hello there,  world. Again";
        assert_eq!(split_tokens(text).concat(), text);
        assert_eq!(split_tokens(text).len(), 4);
    }
}
