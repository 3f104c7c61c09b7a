//! Amazon Nova's `messages-v1` body -> Converse, with every violation listed at once.

use serde_json::{Map, Value, json};

use super::{keys_at, number_at, object_at};
use crate::embedding::schema::Violations;
use crate::error::BedrockError;

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
