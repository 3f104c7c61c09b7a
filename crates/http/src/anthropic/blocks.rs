//! Anthropic content as Quarry's: text, images, documents, tool calls and results,
//! reasoning blocks and tool definitions, each refused by the field it came in when Bedrock
//! could not take it (a block is never dropped silently).

use base64::Engine;
use quarry_core::Error;
use quarry_core::media::{self, Document, DocumentFormat, DocumentSource, Image, ImageFormat};
use quarry_core::model::{ContentBlock, ToolResultContent, ToolSpec};
use serde_json::{Value, json};

use super::request::*;

pub(super) fn bad(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::bad_request(field, message)
}

/// Characters of text a block list carries (the size limit counts them).
pub(super) fn chars_of(blocks: &[InBlock]) -> usize {
    blocks
        .iter()
        .map(|b| match &b.kind {
            BlockKind::Text { text } => text.len(),
            BlockKind::Thinking { thinking, .. } => thinking.len(),
            BlockKind::ToolUse { input, .. } => input.to_string().len(),
            BlockKind::ToolResult {
                content: Some(ToolResultContentIn::Text(t)),
                ..
            } => t.len(),
            BlockKind::ToolResult {
                content: Some(ToolResultContentIn::Blocks(b)),
                ..
            } => chars_of(b),
            BlockKind::Document {
                source: Source::Text { data },
                ..
            } => data.len(),
            _ => 0,
        })
        .sum()
}

fn decode(data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("data must be base64: {e}"))
}

fn image(source: Source) -> Result<Image, String> {
    let Source::Base64 { media_type, data } = source else {
        return Err("images are taken inline (source type base64)".into());
    };
    let format = ImageFormat::from_mime(&media_type).ok_or_else(|| {
        format!("'{media_type}' images are not supported: Bedrock takes png, jpeg, gif and webp")
    })?;
    let image = Image {
        format,
        bytes: decode(&data)?,
    };
    media::check_image(&image)?;
    Ok(image)
}

fn document(
    source: Source,
    title: Option<String>,
    citations: bool,
    index: usize,
) -> Result<Document, String> {
    let (format, source) = match source {
        Source::Base64 { media_type, data } => (
            DocumentFormat::from_mime(&media_type)
                .ok_or_else(|| format!("'{media_type}' documents are not supported"))?,
            DocumentSource::Bytes(decode(&data)?),
        ),
        Source::Text { data } => (DocumentFormat::Txt, DocumentSource::Text(data)),
        Source::Content { content } => (
            DocumentFormat::Txt,
            DocumentSource::Text(texts(content, "a content document")?.join("\n")),
        ),
        Source::Url { .. } | Source::File { .. } => {
            return Err("documents are taken inline (source type base64 or text)".into());
        }
    };
    let doc = Document {
        format,
        name: media::document_name_from(title.as_deref().unwrap_or_default(), index),
        source,
        citations,
    };
    media::check_document(&doc)?;
    Ok(doc)
}

/// The texts of blocks that may hold only text; any other block is refused, never dropped.
fn texts(list: Vec<InBlock>, what: &str) -> Result<Vec<String>, String> {
    list.into_iter()
        .map(|b| match b.kind {
            BlockKind::Text { text } => Ok(text),
            _ => Err(format!("{what} takes text blocks only here")),
        })
        .collect()
}

/// Converse blocks of one message (or of the system prompt); a `cache_control` marks a
/// prompt-cache checkpoint after its block.
pub(super) fn blocks(
    list: Vec<InBlock>,
    at: &str,
    documents: &mut usize,
) -> Result<Vec<ContentBlock>, Error> {
    let mut out = Vec::with_capacity(list.len());
    let mut reasoning = Vec::new();
    for (j, b) in list.into_iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        let part = |r: Result<ContentBlock, String>| r.map_err(|m| bad(here.clone(), m));
        let block = match b.kind {
            BlockKind::Text { text } => ContentBlock::Text(text),
            BlockKind::Image { source } => part(image(source).map(ContentBlock::Image))?,
            BlockKind::Document {
                source,
                title,
                citations,
            } => {
                let cite = citations.is_some_and(|c| c.enabled);
                let d =
                    part(document(source, title, cite, *documents).map(ContentBlock::Document))?;
                *documents += 1;
                d
            }
            BlockKind::ToolUse { id, name, input } => ContentBlock::ToolUse { id, name, input },
            BlockKind::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => ContentBlock::ToolResult {
                tool_use_id,
                content: match content {
                    None => Vec::new(),
                    Some(ToolResultContentIn::Text(t)) => vec![ToolResultContent::Text(t)],
                    Some(ToolResultContentIn::Blocks(list)) => texts(list, "a tool_result")
                        .map_err(|m| bad(here.clone(), m))?
                        .into_iter()
                        .map(ToolResultContent::Text)
                        .collect(),
                },
                is_error,
            },
            // Reasoning goes first in its message, as Bedrock requires whatever order the
            // client accumulated it in.
            BlockKind::Thinking {
                thinking,
                signature,
            } => {
                reasoning.push(ContentBlock::Reasoning {
                    text: thinking,
                    signature: Some(signature),
                });
                continue;
            }
            BlockKind::RedactedThinking { data } => {
                reasoning.push(part(decode(&data).map(ContentBlock::RedactedReasoning))?);
                continue;
            }
            BlockKind::Unsupported => {
                return Err(bad(
                    here,
                    "this block type is not supported through Bedrock (server tools, search results and containers are not)",
                ));
            }
        };
        out.push(block);
        if b.cache_control.is_some() {
            out.push(ContentBlock::CachePoint);
        }
    }
    reasoning.extend(out);
    Ok(reasoning)
}

/// A tool definition: a custom tool (`name`, `description`, `input_schema`); Anthropic's
/// server tools (web search, code execution, ...) are not offered through Bedrock.
pub(super) fn tool(value: Value, i: usize) -> Result<ToolSpec, Error> {
    let at = format!("tools[{i}]");
    if let Some(kind) = value.get("type").and_then(Value::as_str)
        && kind != "custom"
    {
        return Err(bad(
            at,
            format!("tool type '{kind}' is not available through Bedrock: define custom tools"),
        ));
    }
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{at}.name"), "a tool needs a name"))?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad(
            format!("{at}.name"),
            "a tool name is 1 to 64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    Ok(ToolSpec {
        name: name.to_owned(),
        description: value
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        input_schema: value
            .get("input_schema")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        strict: value.get("strict").and_then(Value::as_bool),
    })
}
