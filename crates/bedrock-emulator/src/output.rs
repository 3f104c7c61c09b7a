//! What the model "says": deterministic content for a normalised prompt.

use serde_json::Value;

use crate::citations::{Citation, cite};
use crate::converse::Prompt;
use crate::generate::{Prng, count_tokens, instance_of, reply_tokens, violation_of};
use crate::reasoning;
use crate::tools::{ToolChoice, ToolDef};

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
    /// Extended thinking, as stream tokens, and its signature.
    Reasoning {
        tokens: Vec<String>,
        signature: String,
    },
    /// Text, as the tokens a stream sends one by one.
    Text(Vec<String>),
    /// Text that cites the request's documents.
    Cited {
        tokens: Vec<String>,
        citations: Vec<Citation>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

impl OutBlock {
    /// The answer text of the block (reasoning is not part of the answer).
    pub fn text(&self) -> Option<String> {
        self.tokens().map(|t| t.concat())
    }

    /// The tokens of an answer text block.
    pub fn tokens(&self) -> Option<&Vec<String>> {
        match self {
            Self::Text(tokens) | Self::Cited { tokens, .. } => Some(tokens),
            Self::Reasoning { .. } | Self::ToolUse { .. } => None,
        }
    }

    /// Replaces the text of an answer text block (a guardrail's masking).
    pub fn set_tokens(&mut self, new: Vec<String>) {
        if let Self::Text(tokens) | Self::Cited { tokens, .. } = self {
            *tokens = new;
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

/// The text of a line `Repeat: ...` in the last user message: the model says it word for
/// word, so tests can make the output contain what they need (PII for guardrails, ...).
fn repeated(prompt: &Prompt) -> Option<&str> {
    prompt
        .last_user_text
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("Repeat:"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub fn generate(prompt: &Prompt, model_id: &str, malformed: bool) -> Output {
    let mut rng = Prng::from_parts(&[model_id.as_bytes(), &prompt.fingerprint]);
    let mut blocks = Vec::new();
    let mut output_tokens = 0;

    // Thinking opens an assistant turn; answering a tool result continues the turn that
    // already thought.
    if let Some(budget) = prompt.thinking
        && !prompt.answering_tool_result
    {
        let (tokens, signature) = reasoning::think(model_id, &prompt.fingerprint, budget);
        output_tokens += tokens.len() as u32;
        blocks.push(OutBlock::Reasoning { tokens, signature });
    }

    if let Some(tool) = chosen_tool(prompt) {
        let input = if malformed {
            violation_of(&tool.schema)
        } else {
            instance_of(&tool.schema, &mut rng)
        };
        let id = format!("tooluse_{}", base62(&mut rng, 22));
        // Claude says what it is about to do when it picks a tool itself; a forced choice
        // makes it call the tool straight away.
        if prompt.tool_preamble && prompt.tool_choice == ToolChoice::Auto {
            let preamble = split_tokens(&format!("I'll use the {} tool.", tool.name));
            output_tokens += preamble.len() as u32;
            blocks.push(OutBlock::Text(preamble));
        }
        output_tokens += count_tokens(&input.to_string()).max(1);
        blocks.push(OutBlock::ToolUse {
            id,
            name: tool.name.clone(),
            input,
        });
        return Output {
            blocks,
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
        None => match repeated(prompt) {
            Some(text) => split_tokens(text),
            None => reply_tokens(&mut rng, 12, 60),
        },
    };
    let budget = prompt.max_tokens.saturating_sub(output_tokens);
    let (tokens, stop_reason) = apply_limits(tokens, prompt, budget);
    output_tokens += tokens.len() as u32;
    let citations = if prompt.json_schema.is_none() {
        let mut cite_rng =
            Prng::from_parts(&[b"citations", model_id.as_bytes(), &prompt.fingerprint]);
        cite(&prompt.documents, &mut cite_rng)
    } else {
        Vec::new()
    };
    blocks.push(if citations.is_empty() {
        OutBlock::Text(tokens)
    } else {
        OutBlock::Cited { tokens, citations }
    });
    Output {
        output_tokens,
        blocks,
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

/// Stop sequences first, then the `max_tokens` left after any reasoning.
fn apply_limits(
    mut tokens: Vec<String>,
    prompt: &Prompt,
    max_tokens: u32,
) -> (Vec<String>, StopReason) {
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
    if tokens.len() > max_tokens as usize {
        tokens.truncate(max_tokens as usize);
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
