//! InvokeModel bodies, translated into the Converse shape so one validation and one
//! generation path serve every API (InvokeModel, InvokeModelWithResponseStream, CountTokens'
//! `invokeModel` input and batch inference records).
//!
//! Each model family takes its own native body, checked as strictly as Bedrock checks it
//! (unknown keys are a malformed-input `ValidationException`):
//!
//! * `anthropic.*`: the Anthropic Messages body (`anthropic_version`, `max_tokens`,
//!   `messages`, `system`, `tools`, `tool_choice`, `stop_sequences`, `temperature`, `top_p`,
//!   `top_k`, `cache_control` on blocks).
//! * `amazon.nova-*`: Nova's `messages-v1` body, which is Converse's shape with
//!   base64 media, snake- or camel-case `inferenceConfig` keys and `topK` of its own.
//! * `meta.llama3*`: Llama's prompt body `{"prompt", "max_gen_len"?, "temperature"?,
//!   "top_p"?}`, the prompt sent as one user turn (chat template and all).
//! * Any other chat model (Mistral, Cohere Command, Titan Text): the emulator's stand-in
//!   `{"prompt", "max_tokens"?, "temperature"?, "top_p"?, "stop"?}` (`inputText` and
//!   `max_gen_len` are taken for `prompt` and `max_tokens`), answered in Llama's shape.
//!   Those providers' real bodies are not emulated, so a client written for them will not
//!   find its own fields here.

use serde_json::{Map, Value, json};

use crate::catalog::ResolvedModel;
use crate::embedding::schema::{Violations, type_name};
use crate::error::BedrockError;

/// The InvokeModel body a model takes, and the answer it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Anthropic,
    Nova,
    Llama3,
    /// The emulator's stand-in for providers whose native bodies it does not speak.
    Generic,
}

impl Family {
    pub fn of(model: &ResolvedModel) -> Self {
        let id = model.base_id.as_str();
        match model.spec.provider.as_str() {
            "anthropic" => Self::Anthropic,
            // Titan Text is `amazon` too, and has a body of its own.
            "amazon" if id.starts_with("amazon.nova") => Self::Nova,
            "meta" if id.starts_with("meta.llama3") => Self::Llama3,
            _ => Self::Generic,
        }
    }

    /// The family's body -> Converse.
    pub fn to_converse(self, body: &Value) -> Result<Value, BedrockError> {
        match self {
            Self::Anthropic => anthropic_to_converse(body),
            Self::Nova => nova_to_converse(body),
            Self::Llama3 => llama3_to_converse(body),
            Self::Generic => generic_to_converse(body),
        }
    }
}

fn malformed(detail: impl std::fmt::Display) -> BedrockError {
    BedrockError::validation(format!(
        "Malformed input request: {detail}, please reformat your input and try again."
    ))
}

fn extraneous(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), BedrockError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(malformed(format!(
            "#: extraneous key [{key}] is not permitted"
        ))),
        None => Ok(()),
    }
}

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

/// Nova's top-level keys in `messages-v1`.
const NOVA_KEYS: &[&str] = &[
    "schemaVersion",
    "system",
    "messages",
    "inferenceConfig",
    "toolConfig",
];

/// Nova takes Converse's camel-case names and its own snake-case ones alike.
const NOVA_INFERENCE_KEYS: &[&str] = &[
    "maxTokens",
    "max_new_tokens",
    "temperature",
    "topP",
    "top_p",
    "topK",
    "top_k",
    "stopSequences",
];

/// Message content Nova's Invoke API takes; documents are Converse's alone.
const NOVA_BLOCKS: &[&str] = &[
    "text",
    "image",
    "video",
    "toolUse",
    "toolResult",
    "cachePoint",
];

const NOVA_SYSTEM_BLOCKS: &[&str] = &["text", "cachePoint"];

/// Required and extraneous keys of the object at `path`, in Bedrock's words.
fn keys_at(
    v: &mut Violations,
    path: &str,
    obj: &Map<String, Value>,
    required: &[&str],
    allowed: &[&str],
) {
    for key in required {
        if !obj.contains_key(*key) {
            v.add(format!("{path}: required key [{key}] not found"));
        }
    }
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            v.add(format!("{path}: extraneous key [{key}] is not permitted"));
        }
    }
}

fn object_at<'a>(
    v: &mut Violations,
    path: &str,
    value: &'a Value,
) -> Option<&'a Map<String, Value>> {
    let obj = value.as_object();
    if obj.is_none() {
        v.add(format!(
            "{path}: expected type: JSONObject, found: {}",
            type_name(value)
        ));
    }
    obj
}

fn number_at(v: &mut Violations, path: &str, value: &Value) -> Option<Value> {
    if value.is_number() {
        Some(value.clone())
    } else {
        v.add(format!(
            "{path}: expected type: Number, found: {}",
            type_name(value)
        ));
        None
    }
}

/// A content block: an object with exactly one of `allowed` as its key. Its inside is
/// Converse's (media as base64, as Converse's JSON carries it too), so Converse's
/// validation checks it after.
fn nova_block(v: &mut Violations, path: &str, block: &Value, allowed: &[&str]) {
    let Some(obj) = object_at(v, path, block) else {
        return;
    };
    keys_at(v, path, obj, &[], allowed);
    if obj.len() != 1 {
        v.add(format!(
            "{path}: expected exactly one of [{}], found: {}",
            allowed.join(", "),
            obj.len()
        ));
    }
}

/// Amazon Nova `messages-v1` -> Converse.
pub fn nova_to_converse(body: &Value) -> Result<Value, BedrockError> {
    let obj = Violations::object(body)?;
    let mut v = Violations::default();
    keys_at(&mut v, "#", obj, &["messages"], NOVA_KEYS);
    if let Some(version) = obj.get("schemaVersion") {
        v.one_of("#/schemaVersion", version, &["messages-v1"]);
    }
    let mut converse = Map::new();

    if let Some(messages) = obj.get("messages").and_then(|m| v.array("#/messages", m)) {
        for (i, m) in messages.iter().enumerate() {
            let at = format!("#/messages/{i}");
            let Some(message) = object_at(&mut v, &at, m) else {
                continue;
            };
            keys_at(
                &mut v,
                &at,
                message,
                &["role", "content"],
                &["role", "content"],
            );
            if let Some(role) = message.get("role") {
                v.one_of(&format!("{at}/role"), role, &["user", "assistant"]);
            }
            if let Some(content) = message
                .get("content")
                .and_then(|c| v.array(&format!("{at}/content"), c))
            {
                for (j, block) in content.iter().enumerate() {
                    nova_block(&mut v, &format!("{at}/content/{j}"), block, NOVA_BLOCKS);
                }
            }
        }
        converse.insert("messages".into(), Value::Array(messages.clone()));
    }

    if let Some(system) = obj.get("system").and_then(|s| v.array("#/system", s)) {
        for (i, block) in system.iter().enumerate() {
            nova_block(&mut v, &format!("#/system/{i}"), block, NOVA_SYSTEM_BLOCKS);
        }
        converse.insert("system".into(), Value::Array(system.clone()));
    }

    if let Some(config) = obj
        .get("inferenceConfig")
        .and_then(|c| object_at(&mut v, "#/inferenceConfig", c))
    {
        keys_at(
            &mut v,
            "#/inferenceConfig",
            config,
            &[],
            NOVA_INFERENCE_KEYS,
        );
        let mut inference = Map::new();
        for (key, converse_key) in [("max_new_tokens", "maxTokens"), ("maxTokens", "maxTokens")] {
            if let Some(n) = config.get(key)
                && v.integer(&format!("#/inferenceConfig/{key}"), n).is_some()
            {
                inference.insert(converse_key.into(), n.clone());
            }
        }
        for (key, converse_key) in [
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("topP", "topP"),
        ] {
            if let Some(x) = config
                .get(key)
                .and_then(|x| number_at(&mut v, &format!("#/inferenceConfig/{key}"), x))
            {
                inference.insert(converse_key.into(), x);
            }
        }
        if let Some(stops) = config
            .get("stopSequences")
            .and_then(|s| v.array("#/inferenceConfig/stopSequences", s))
        {
            inference.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        // Converse carries Nova's top-k among the model's own fields, as Nova reads them.
        for key in ["top_k", "topK"] {
            if let Some(k) = config.get(key)
                && v.integer(&format!("#/inferenceConfig/{key}"), k).is_some()
            {
                converse.insert(
                    "additionalModelRequestFields".into(),
                    json!({ "inferenceConfig": { "topK": k } }),
                );
            }
        }
        if !inference.is_empty() {
            converse.insert("inferenceConfig".into(), Value::Object(inference));
        }
    }

    if let Some(tool_config) = obj.get("toolConfig") {
        if let Some(config) = object_at(&mut v, "#/toolConfig", tool_config) {
            keys_at(
                &mut v,
                "#/toolConfig",
                config,
                &["tools"],
                &["tools", "toolChoice"],
            );
        }
        // The tools and the choice are Converse's own shapes; Converse checks them.
        converse.insert("toolConfig".into(), tool_config.clone());
    }

    v.finish()?;
    Ok(Value::Object(converse))
}

/// Llama 3's chat template marks turns with special tokens (`<|begin_of_text|>`,
/// `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>`, ...). The prompt is read as
/// one user turn with each such token a line break, so a line of the prompt stays a line
/// (the `Repeat:` steering finds it) and a marker counts about as little as the one token
/// Llama's tokenizer makes of it.
fn llama_prompt_text(prompt: &str) -> String {
    let mut text = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(start) = rest.find("<|") {
        let after = &rest[start + 2..];
        let special = after.find("|>").filter(|end| {
            let name = &after[..*end];
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        match special {
            Some(end) => {
                text.push_str(&rest[..start]);
                text.push('\n');
                rest = &after[end + 2..];
            }
            None => {
                text.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text
}

/// Meta Llama 3's prompt body -> Converse: the prompt, chat template and all, is one user
/// turn.
pub fn llama3_to_converse(body: &Value) -> Result<Value, BedrockError> {
    let obj = Violations::object(body)?;
    let mut v = Violations::default();
    keys_at(
        &mut v,
        "#",
        obj,
        &["prompt"],
        &["prompt", "max_gen_len", "temperature", "top_p"],
    );
    let prompt = obj.get("prompt").and_then(|p| v.string("#/prompt", p));
    let mut inference = Map::new();
    if let Some(n) = obj.get("max_gen_len")
        && v.integer("#/max_gen_len", n).is_some()
    {
        inference.insert("maxTokens".into(), n.clone());
    }
    for (key, converse_key) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(x) = obj
            .get(key)
            .and_then(|x| number_at(&mut v, &format!("#/{key}"), x))
        {
            inference.insert(converse_key.into(), x);
        }
    }
    v.finish()?;
    Ok(json!({
        "messages": [{ "role": "user", "content": [{ "text": llama_prompt_text(prompt.unwrap_or_default()) }] }],
        "inferenceConfig": Value::Object(inference),
    }))
}

/// The emulator's stand-in body -> Converse.
pub fn generic_to_converse(body: &Value) -> Result<Value, BedrockError> {
    let obj = body
        .as_object()
        .ok_or_else(|| malformed("#: expected type: JSONObject"))?;
    extraneous(
        obj,
        &[
            "prompt",
            "inputText",
            "max_tokens",
            "max_gen_len",
            "temperature",
            "top_p",
            "stop",
        ],
    )?;
    let prompt = obj
        .get("prompt")
        .or_else(|| obj.get("inputText"))
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("#: required key [prompt] not found"))?;
    let mut inference = Map::new();
    if let Some(n) = obj.get("max_tokens").or_else(|| obj.get("max_gen_len")) {
        inference.insert("maxTokens".into(), n.clone());
    }
    if let Some(t) = obj.get("temperature") {
        inference.insert("temperature".into(), t.clone());
    }
    if let Some(p) = obj.get("top_p") {
        inference.insert("topP".into(), p.clone());
    }
    if let Some(s) = obj.get("stop") {
        inference.insert("stopSequences".into(), s.clone());
    }
    Ok(json!({
        "messages": [{ "role": "user", "content": [{ "text": prompt }] }],
        "inferenceConfig": Value::Object(inference),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_requires_version_and_max_tokens() {
        let e = anthropic_to_converse(&json!({"messages": []})).unwrap_err();
        assert!(e.message.contains("anthropic_version"));
        let e = anthropic_to_converse(
            &json!({"anthropic_version": "bedrock-2023-05-31", "messages": []}),
        )
        .unwrap_err();
        assert!(e.message.contains("max_tokens"));
    }

    #[test]
    fn anthropic_maps_system_tools_and_cache_control() {
        let c = anthropic_to_converse(&json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "t", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "t"}
        }))
        .unwrap();
        assert_eq!(c["system"][1]["cachePoint"]["type"], "default");
        assert_eq!(c["toolConfig"]["toolChoice"]["tool"]["name"], "t");
        assert_eq!(c["messages"][0]["content"][0]["text"], "hi");
    }

    #[test]
    fn anthropic_maps_media_thinking_and_model_fields() {
        let c = anthropic_to_converse(&json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
                {"type": "document", "title": "notes.txt", "citations": {"enabled": true},
                 "source": {"type": "text", "media_type": "text/plain", "data": "Hello."}},
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ]}]
        }))
        .unwrap();
        let content = &c["messages"][0]["content"];
        assert_eq!(content[0]["image"]["format"], "png");
        assert_eq!(content[1]["document"]["name"], "notes txt");
        assert_eq!(content[1]["document"]["source"]["text"], "Hello.");
        assert_eq!(content[3]["cachePoint"]["ttl"], "1h");
        assert_eq!(
            c["additionalModelRequestFields"]["thinking"]["budget_tokens"],
            1024
        );
    }

    #[test]
    fn nova_maps_messages_v1_onto_converse() {
        let c = nova_to_converse(&json!({
            "schemaVersion": "messages-v1",
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [
                {"text": "hi"},
                {"image": {"format": "png", "source": {"bytes": "iVBORw=="}}}
            ]}],
            "inferenceConfig": {"max_new_tokens": 50, "top_p": 0.9, "top_k": 20,
                                "temperature": 0.2, "stopSequences": ["END"]},
            "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {}}}}],
                           "toolChoice": {"auto": {}}}
        }))
        .unwrap();
        assert_eq!(c["system"][1]["cachePoint"]["type"], "default");
        assert_eq!(c["messages"][0]["content"][1]["image"]["format"], "png");
        assert_eq!(
            c["inferenceConfig"],
            json!({"maxTokens": 50, "topP": 0.9, "temperature": 0.2, "stopSequences": ["END"]})
        );
        assert_eq!(
            c["additionalModelRequestFields"]["inferenceConfig"]["topK"],
            20
        );
        assert_eq!(c["toolConfig"]["tools"][0]["toolSpec"]["name"], "t");
        assert!(c.get("schemaVersion").is_none());

        let camel = nova_to_converse(&json!({
            "messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"maxTokens": 7, "topP": 0.5}
        }))
        .unwrap();
        assert_eq!(
            camel["inferenceConfig"],
            json!({"maxTokens": 7, "topP": 0.5})
        );
    }

    #[test]
    fn nova_refuses_what_messages_v1_does_not_have() {
        let e = nova_to_converse(&json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .unwrap_err();
        assert_eq!(
            e.message,
            "Malformed input request: #: extraneous key [anthropic_version] is not permitted\
             #: extraneous key [max_tokens] is not permitted\
             #/messages/0/content: expected type: JSONArray, found: String, \
             please reformat your input and try again."
        );
        let e = nova_to_converse(&json!({"prompt": "hi"})).unwrap_err();
        assert!(
            e.message.contains("#: required key [messages] not found"),
            "{}",
            e.message
        );
        let e = nova_to_converse(&json!({
            "schemaVersion": "messages-v2",
            "messages": [{"role": "system", "content": [{"document": {}}, {}]}],
            "inferenceConfig": {"max_tokens": 5, "temperature": "hot"}
        }))
        .unwrap_err();
        for part in [
            "#/schemaVersion: messages-v2 is not a valid enum value",
            "#/messages/0/role: system is not a valid enum value",
            "#/messages/0/content/0: extraneous key [document] is not permitted",
            "#/messages/0/content/1: expected exactly one of",
            "#/inferenceConfig: extraneous key [max_tokens] is not permitted",
            "#/inferenceConfig/temperature: expected type: Number, found: String",
        ] {
            assert!(e.message.contains(part), "{part} not in {}", e.message);
        }
    }

    #[test]
    fn llama_takes_its_own_fields_only() {
        let c = llama3_to_converse(&json!({
            "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nRepeat: hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            "max_gen_len": 64, "temperature": 0.1, "top_p": 0.9
        }))
        .unwrap();
        let text = c["messages"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.lines().any(|l| l == "Repeat: hello"), "{text:?}");
        assert!(!text.contains("<|"), "{text:?}");
        assert_eq!(
            c["inferenceConfig"],
            json!({"maxTokens": 64, "temperature": 0.1, "topP": 0.9})
        );
        let e = llama3_to_converse(&json!({"prompt": "x", "max_tokens": 5, "stop": ["a"]}))
            .unwrap_err();
        assert!(
            e.message
                .contains("#: extraneous key [max_tokens] is not permitted")
        );
        assert!(
            e.message
                .contains("#: extraneous key [stop] is not permitted")
        );
        let e = llama3_to_converse(&json!({"max_gen_len": "many"})).unwrap_err();
        assert!(e.message.contains("#: required key [prompt] not found"));
        assert!(
            e.message
                .contains("#/max_gen_len: expected type: Integer, found: String")
        );
        // Text that only looks like a marker is left alone.
        assert_eq!(
            llama_prompt_text("a <|not a token|> b"),
            "a <|not a token|> b"
        );
    }

    #[test]
    fn generic_rejects_unknown_keys() {
        let e = generic_to_converse(&json!({"prompt": "x", "bogus": 1})).unwrap_err();
        assert!(e.message.contains("bogus"));
    }
}
