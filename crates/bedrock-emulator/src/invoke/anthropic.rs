//! The Anthropic Messages body (`anthropic.*` models) -> Converse.

use serde_json::{Map, Value, json};

use super::{extraneous, malformed};
use crate::error::BedrockError;

/// Anthropic Messages -> Converse.
pub fn anthropic_to_converse(body: &Value) -> Result<Value, BedrockError> {
    let obj = body
        .as_object()
        .ok_or_else(|| malformed("#: expected type: JSONObject"))?;
    extraneous(
        obj,
        &[
            "anthropic_version",
            "anthropic_beta",
            "max_tokens",
            "messages",
            "system",
            "tools",
            "tool_choice",
            "stop_sequences",
            "temperature",
            "top_p",
            "top_k",
            "metadata",
            "thinking",
        ],
    )?;
    if !obj.get("anthropic_version").is_some_and(Value::is_string) {
        return Err(malformed("#: required key [anthropic_version] not found"));
    }
    let max_tokens = obj
        .get("max_tokens")
        .ok_or_else(|| malformed("#: required key [max_tokens] not found"))?
        .as_i64()
        .ok_or_else(|| malformed("#/max_tokens: expected type: Integer"))?;
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("#: required key [messages] not found"))?;

    let mut converse_messages = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("#/messages/{i}: required key [role] not found")))?;
        if role != "user" && role != "assistant" {
            return Err(malformed(format!(
                "#/messages/{i}/role: {role} is not a valid enum value"
            )));
        }
        let content = m.get("content").ok_or_else(|| {
            malformed(format!("#/messages/{i}: required key [content] not found"))
        })?;
        converse_messages.push(json!({ "role": role, "content": anthropic_blocks(content, i)? }));
    }

    let mut converse = json!({
        "messages": converse_messages,
        "inferenceConfig": { "maxTokens": max_tokens },
    });
    if let Some(t) = obj.get("temperature") {
        converse["inferenceConfig"]["temperature"] = t.clone();
    }
    if let Some(p) = obj.get("top_p") {
        converse["inferenceConfig"]["topP"] = p.clone();
    }
    if let Some(stops) = obj.get("stop_sequences") {
        converse["inferenceConfig"]["stopSequences"] = stops.clone();
    }
    // What Converse carries in additionalModelRequestFields, the Messages body has at its
    // top level.
    let mut additional = Map::new();
    for key in ["thinking", "top_k", "anthropic_beta"] {
        if let Some(v) = obj.get(key) {
            additional.insert(key.into(), v.clone());
        }
    }
    if !additional.is_empty() {
        converse["additionalModelRequestFields"] = Value::Object(additional);
    }
    if let Some(system) = obj.get("system") {
        converse["system"] = match system {
            Value::String(s) => json!([{ "text": s }]),
            Value::Array(blocks) => {
                let mut out = Vec::new();
                for b in blocks {
                    let text = b
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed("#/system: expected text blocks"))?;
                    out.push(json!({ "text": text }));
                    if let Some(cache) = b.get("cache_control") {
                        out.push(cache_point(cache));
                    }
                }
                Value::Array(out)
            }
            _ => return Err(malformed("#/system: expected type: String or JSONArray")),
        };
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let mut specs = Vec::new();
        for t in tools {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("#/tools: required key [name] not found"))?;
            let schema = t
                .get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            let mut spec = json!({ "name": name, "inputSchema": { "json": schema } });
            if let Some(d) = t.get("description") {
                spec["description"] = d.clone();
            }
            specs.push(json!({ "toolSpec": spec }));
        }
        let choice = match obj.get("tool_choice") {
            None => json!({ "auto": {} }),
            Some(c) => match c.get("type").and_then(Value::as_str) {
                Some("auto") => json!({ "auto": {} }),
                Some("any") => json!({ "any": {} }),
                Some("tool") => {
                    json!({ "tool": { "name": c.get("name").cloned().unwrap_or(Value::Null) } })
                }
                _ => return Err(malformed("#/tool_choice/type: expected auto, any or tool")),
            },
        };
        converse["toolConfig"] = json!({ "tools": specs, "toolChoice": choice });
    }
    Ok(converse)
}

fn anthropic_blocks(content: &Value, i: usize) -> Result<Value, BedrockError> {
    match content {
        Value::String(s) => Ok(json!([{ "text": s }])),
        Value::Array(blocks) => {
            let mut out = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                let at = || format!("#/messages/{i}/content/{j}");
                let converted = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        json!({ "text": b.get("text").cloned().unwrap_or(Value::Null) })
                    }
                    Some("image") => anthropic_image(b, &at())?,
                    Some("document") => anthropic_document(b, &at(), j)?,
                    Some("thinking") => json!({ "reasoningContent": { "reasoningText": {
                        "text": b.get("thinking").cloned().unwrap_or(Value::Null),
                        "signature": b.get("signature").cloned().unwrap_or(Value::Null),
                    }}}),
                    Some("redacted_thinking") => json!({ "reasoningContent": {
                        "redactedContent": b.get("data").cloned().unwrap_or(Value::Null),
                    }}),
                    Some("tool_use") => json!({ "toolUse": {
                        "toolUseId": b.get("id").cloned().unwrap_or(Value::Null),
                        "name": b.get("name").cloned().unwrap_or(Value::Null),
                        "input": b.get("input").cloned().unwrap_or(json!({})),
                    }}),
                    Some("tool_result") => {
                        let parts = match b.get("content") {
                            Some(Value::String(s)) => json!([{ "text": s }]),
                            Some(Value::Array(a)) => Value::Array(a.clone()),
                            _ => json!([]),
                        };
                        json!({ "toolResult": {
                            "toolUseId": b.get("tool_use_id").cloned().unwrap_or(Value::Null),
                            "content": parts,
                        }})
                    }
                    Some(other) => {
                        return Err(malformed(format!(
                            "{}/type: {other} is not a valid enum value",
                            at()
                        )));
                    }
                    None => {
                        return Err(malformed(format!(
                            "{}: required key [type] not found",
                            at()
                        )));
                    }
                };
                out.push(converted);
                if let Some(cache) = b.get("cache_control") {
                    out.push(cache_point(cache));
                }
            }
            Ok(Value::Array(out))
        }
        _ => Err(malformed(format!(
            "#/messages/{i}/content: expected type: String or JSONArray"
        ))),
    }
}

/// `cache_control` -> a Converse cache checkpoint with the same TTL.
fn cache_point(cache_control: &Value) -> Value {
    match cache_control.get("ttl") {
        Some(ttl) => json!({ "cachePoint": { "type": "default", "ttl": ttl } }),
        None => json!({ "cachePoint": { "type": "default" } }),
    }
}

/// An Anthropic `image` block (`source: {type: base64, media_type, data}`) -> Converse.
fn anthropic_image(block: &Value, at: &str) -> Result<Value, BedrockError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    if source.get("type").and_then(Value::as_str) != Some("base64") {
        return Err(malformed(format!(
            "{at}/source/type: only base64 images are supported"
        )));
    }
    let format = source
        .get("media_type")
        .and_then(Value::as_str)
        .and_then(|m| m.strip_prefix("image/"))
        .ok_or_else(|| malformed(format!("{at}/source: required key [media_type] not found")))?;
    Ok(json!({ "image": {
        "format": format,
        "source": { "bytes": source.get("data").cloned().unwrap_or(Value::Null) },
    }}))
}

/// A document title as a Converse document name, which allows fewer characters.
fn document_name(title: Option<&str>, position: usize) -> String {
    let cleaned: String = title
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let name = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    let name: String = name.chars().take(200).collect();
    if name.is_empty() {
        format!("document {}", position + 1)
    } else {
        name
    }
}

/// An Anthropic `document` block (base64 PDF or text, plain text, or custom content)
/// -> Converse.
fn anthropic_document(block: &Value, at: &str, position: usize) -> Result<Value, BedrockError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let data = || source.get("data").cloned().unwrap_or(Value::Null);
    let (format, converse_source) = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let format = match source.get("media_type").and_then(Value::as_str) {
                Some("application/pdf") => "pdf",
                Some("text/plain") => "txt",
                other => {
                    return Err(malformed(format!(
                        "{at}/source/media_type: {} is not a valid enum value",
                        other.unwrap_or("null")
                    )));
                }
            };
            (format, json!({ "bytes": data() }))
        }
        Some("text") => ("txt", json!({ "text": data() })),
        Some("content") => {
            let parts: Vec<Value> = match source.get("content") {
                Some(Value::String(s)) => vec![json!({ "text": s })],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|p| json!({ "text": p.get("text").cloned().unwrap_or(Value::Null) }))
                    .collect(),
                _ => Vec::new(),
            };
            ("txt", json!({ "content": parts }))
        }
        _ => {
            return Err(malformed(format!(
                "{at}/source/type: expected base64, text or content"
            )));
        }
    };
    let mut document = json!({
        "format": format,
        "name": document_name(block.get("title").and_then(Value::as_str), position),
        "source": converse_source,
    });
    if let Some(context) = block.get("context") {
        document["context"] = context.clone();
    }
    if let Some(citations) = block.get("citations") {
        document["citations"] = citations.clone();
    }
    Ok(json!({ "document": document }))
}
