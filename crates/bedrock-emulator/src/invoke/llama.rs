//! Meta Llama 3's prompt body, and the emulator's stand-in body for other providers, -> Converse.

use serde_json::{Map, Value, json};

use super::{extraneous, keys_at, malformed, number_at};
use crate::embedding::schema::Violations;
use crate::error::BedrockError;

/// Llama 3's chat template marks turns with special tokens (`<|begin_of_text|>`,
/// `<|start_header_id|>`, `<|end_header_id|>`, `<|eot_id|>`, ...). The prompt is read as
/// one user turn with each such token a line break, so a line of the prompt stays a line
/// (the `Repeat:` steering finds it) and a marker counts about as little as the one token
/// Llama's tokenizer makes of it.
pub(super) fn llama_prompt_text(prompt: &str) -> String {
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
