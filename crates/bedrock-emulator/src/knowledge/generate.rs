//! RetrieveAndGenerate (`POST /retrieveAndGenerate`) with a `KNOWLEDGE_BASE`
//! configuration: the answer is built from the first sentence of each of the top passages,
//! and each sentence cites the passage it came from.

use serde_json::{Value, json};

use super::corpus::Chunk;
use super::retrieve::{self, location};
use crate::error::BedrockError;

/// Passages an answer quotes at most.
const CITED: usize = 3;

/// The parts of a request the knowledge base lookup needs before the answer is built.
pub struct Target {
    pub knowledge_base_id: String,
    pub model_arn: String,
}

fn missing(at: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value null at '{at}' failed to satisfy constraint: Member must not be null"
    ))
}

/// The knowledge base and model the request names.
pub fn target(body: &Value) -> Result<Target, BedrockError> {
    let config = body
        .get("retrieveAndGenerateConfiguration")
        .ok_or_else(|| missing("retrieveAndGenerateConfiguration"))?;
    match config.get("type").and_then(Value::as_str) {
        Some("KNOWLEDGE_BASE") => {}
        Some("EXTERNAL_SOURCES") => {
            return Err(BedrockError::validation(
                "The emulator serves RetrieveAndGenerate for KNOWLEDGE_BASE configurations only.",
            ));
        }
        _ => {
            return Err(BedrockError::validation(
                "1 validation error detected: Value at 'retrieveAndGenerateConfiguration.type' failed to satisfy constraint: Member must satisfy enum value set: [KNOWLEDGE_BASE, EXTERNAL_SOURCES]",
            ));
        }
    }
    let kb = config
        .get("knowledgeBaseConfiguration")
        .ok_or_else(|| missing("retrieveAndGenerateConfiguration.knowledgeBaseConfiguration"))?;
    let field = |name: &str| {
        kb.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                missing(&format!(
                    "retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.{name}"
                ))
            })
    };
    Ok(Target {
        knowledge_base_id: field("knowledgeBaseId")?,
        model_arn: field("modelArn")?,
    })
}

/// First sentence of a passage (the whole passage when it has no sentence end).
fn first_sentence(text: &str) -> &str {
    text.char_indices()
        .find(|&(i, c)| {
            matches!(c, '.' | '!' | '?')
                && text[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map_or(text, |(i, c)| &text[..i + c.len_utf8()])
        .trim()
}

/// The answer; `session_id` is the request's or a new one.
pub fn respond(chunks: &[Chunk], body: &Value, session_id: &str) -> Result<Value, BedrockError> {
    let query = retrieve::query_text(body, "input", 1000)?;
    let kb = body
        .pointer("/retrieveAndGenerateConfiguration/knowledgeBaseConfiguration")
        .cloned()
        .unwrap_or(Value::Null);
    let search = retrieve::search(kb.get("retrievalConfiguration"))?;
    let ranked = retrieve::rank(chunks, &query, &search);
    let session = match body.get("sessionId") {
        None => session_id,
        Some(v) => v
            .as_str()
            .filter(|s| {
                (2..=100).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
            })
            .ok_or_else(|| {
                BedrockError::validation(format!(
                    "1 validation error detected: Value '{}' at 'sessionId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[0-9a-zA-Z._:-]+$",
                    v.as_str().unwrap_or_default()
                ))
            })?,
    };
    if ranked.is_empty() {
        // Bedrock's model answers this way when retrieval found nothing.
        return Ok(json!({
            "output": { "text": "Sorry, I am unable to assist you with this request." },
            "citations": [],
            "sessionId": session,
        }));
    }
    let mut text = String::new();
    let mut citations = Vec::new();
    for (chunk, _) in ranked.iter().take(CITED) {
        let sentence = first_sentence(&chunk.text);
        if !text.is_empty() {
            text.push(' ');
        }
        let start = text.chars().count();
        text.push_str(sentence);
        let end = text.chars().count();
        citations.push(json!({
            "generatedResponsePart": {
                "textResponsePart": { "text": sentence, "span": { "start": start, "end": end - 1 } }
            },
            "retrievedReferences": [{
                "content": { "text": chunk.text, "type": "TEXT" },
                "location": location(chunk),
                "metadata": chunk.metadata,
            }],
        }));
    }
    Ok(json!({
        "output": { "text": text },
        "citations": citations,
        "sessionId": session,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sentence_stops_at_the_first_end() {
        assert_eq!(
            first_sentence("Quarry 2.5 ships. It is fast."),
            "Quarry 2.5 ships."
        );
        assert_eq!(first_sentence("v2.5 is out"), "v2.5 is out");
    }
}
