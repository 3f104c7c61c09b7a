//! A request in a model's own InvokeModel body, and that body's answer back: what Bedrock
//! batch inference records carry (`modelInput` and `modelOutput`), where Converse's common
//! shape does not exist. Anthropic's Messages body, Amazon Nova's `messages-v1` and Meta
//! Llama 3's prompt format; any other provider is refused by name rather than guessed at.

use base64::Engine;
use quarry_core::model::{
    ContentBlock, ModelError, ModelErrorKind, ModelRequest, ModelResponse, Role, StopReason,
    SystemBlock, TokenUsage, ToolResultContent,
};
use serde_json::{Map, Value, json};

/// The body families batch inference takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Anthropic,
    Nova,
    Llama3,
}

impl Family {
    /// The family of a base model ID (`anthropic.claude-...`, `amazon.nova-...`,
    /// `meta.llama3-...`).
    pub fn of(base_model: &str) -> Option<Self> {
        if base_model.starts_with("anthropic.claude") {
            Some(Self::Anthropic)
        } else if base_model.starts_with("amazon.nova") {
            Some(Self::Nova)
        } else if base_model.starts_with("meta.llama3") {
            Some(Self::Llama3)
        } else {
            None
        }
    }
}

fn refused(message: impl Into<String>) -> ModelError {
    ModelError::new(ModelErrorKind::Validation, message)
}

fn system_text(request: &ModelRequest) -> String {
    request
        .system
        .iter()
        .filter_map(|b| match b {
            SystemBlock::Text(t) => Some(t.as_str()),
            SystemBlock::CachePoint => None,
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn role(r: Role) -> &'static str {
    match r {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// What a block may not be in a batch record.
fn unsupported(block: &ContentBlock) -> ModelError {
    let what = match block {
        ContentBlock::Document(_) => "documents",
        ContentBlock::Reasoning { .. } | ContentBlock::RedactedReasoning(_) => "reasoning blocks",
        ContentBlock::Image(_) => "images",
        _ => "this content",
    };
    refused(format!(
        "{what} cannot be sent to batch inference for this model"
    ))
}

fn tool_result_text(content: &[ToolResultContent]) -> String {
    content
        .iter()
        .map(|c| match c {
            ToolResultContent::Text(t) => t.clone(),
            ToolResultContent::Json(v) => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The model's own InvokeModel body for `request`.
pub fn body(base_model: &str, request: &ModelRequest) -> Result<Value, ModelError> {
    let family = Family::of(base_model).ok_or_else(|| {
        refused(format!(
            "{base_model} has no batch inference body here (Anthropic Claude, Amazon Nova and Meta Llama 3 do)"
        ))
    })?;
    match family {
        Family::Anthropic => anthropic(request),
        Family::Nova => nova(request),
        Family::Llama3 => llama3(request),
    }
}

fn anthropic(request: &ModelRequest) -> Result<Value, ModelError> {
    let mut messages = Vec::new();
    for m in &request.messages {
        let mut content = Vec::new();
        for b in &m.content {
            content.push(match b {
                ContentBlock::Text(t) => json!({"type": "text", "text": t}),
                ContentBlock::Image(image) => json!({"type": "image", "source": {
                    "type": "base64",
                    "media_type": format!("image/{}", image.format.as_str()),
                    "data": base64::engine::general_purpose::STANDARD.encode(&image.bytes),
                }}),
                ContentBlock::ToolUse { id, name, input } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => json!({"type": "tool_result", "tool_use_id": tool_use_id,
                            "content": tool_result_text(content), "is_error": is_error}),
                ContentBlock::CachePoint => continue,
                other => return Err(unsupported(other)),
            });
        }
        messages.push(json!({"role": role(m.role), "content": content}));
    }
    let p = &request.params;
    let mut body = Map::new();
    body.insert("anthropic_version".into(), json!("bedrock-2023-05-31"));
    // Anthropic's body requires `max_tokens`.
    body.insert("max_tokens".into(), json!(p.max_tokens.unwrap_or(4096)));
    body.insert("messages".into(), Value::Array(messages));
    let system = system_text(request);
    if !system.is_empty() {
        body.insert("system".into(), json!(system));
    }
    if let Some(t) = p.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(t) = p.top_p {
        body.insert("top_p".into(), json!(t));
    }
    if let Some(k) = p.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if !p.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(p.stop));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    Ok(Value::Object(body))
}

fn nova(request: &ModelRequest) -> Result<Value, ModelError> {
    let mut messages = Vec::new();
    for m in &request.messages {
        let mut content = Vec::new();
        for b in &m.content {
            content.push(match b {
                ContentBlock::Text(t) => json!({"text": t}),
                ContentBlock::Image(image) => json!({"image": {
                    "format": image.format.as_str(),
                    "source": {"bytes": base64::engine::general_purpose::STANDARD.encode(&image.bytes)},
                }}),
                ContentBlock::ToolUse { id, name, input } => {
                    json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
                }
                ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => json!({"toolResult": {"toolUseId": tool_use_id,
                    "content": [{"text": tool_result_text(content)}],
                    "status": if *is_error { "error" } else { "success" }}}),
                ContentBlock::CachePoint => continue,
                other => return Err(unsupported(other)),
            });
        }
        messages.push(json!({"role": role(m.role), "content": content}));
    }
    let p = &request.params;
    let mut config = Map::new();
    if let Some(n) = p.max_tokens {
        config.insert("maxTokens".into(), json!(n));
    }
    if let Some(t) = p.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(t) = p.top_p {
        config.insert("topP".into(), json!(t));
    }
    if let Some(k) = p.top_k {
        config.insert("topK".into(), json!(k));
    }
    if !p.stop.is_empty() {
        config.insert("stopSequences".into(), json!(p.stop));
    }
    let mut body = Map::new();
    body.insert("schemaVersion".into(), json!("messages-v1"));
    body.insert("messages".into(), Value::Array(messages));
    let system = system_text(request);
    if !system.is_empty() {
        body.insert("system".into(), json!([{"text": system}]));
    }
    if !config.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(config));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"toolSpec": {"name": t.name, "description": t.description,
                                         "inputSchema": {"json": t.input_schema}}})
            })
            .collect();
        body.insert("toolConfig".into(), json!({"tools": tools}));
    }
    Ok(Value::Object(body))
}

fn llama3(request: &ModelRequest) -> Result<Value, ModelError> {
    if !request.tools.is_empty() {
        return Err(refused(
            "tools cannot be sent to batch inference for Llama 3",
        ));
    }
    // Llama 3's chat template, as Meta documents it for Bedrock.
    let mut prompt = String::from("<|begin_of_text|>");
    let turn = |prompt: &mut String, role: &str, text: &str| {
        prompt.push_str(&format!(
            "<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"
        ));
    };
    let system = system_text(request);
    if !system.is_empty() {
        turn(&mut prompt, "system", &system);
    }
    for m in &request.messages {
        let mut text = String::new();
        for b in &m.content {
            match b {
                ContentBlock::Text(t) => text.push_str(t),
                ContentBlock::CachePoint => {}
                other => return Err(unsupported(other)),
            }
        }
        turn(&mut prompt, role(m.role), &text);
    }
    prompt.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
    let p = &request.params;
    let mut body = Map::new();
    body.insert("prompt".into(), json!(prompt));
    if let Some(n) = p.max_tokens {
        body.insert("max_gen_len".into(), json!(n));
    }
    if let Some(t) = p.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(t) = p.top_p {
        body.insert("top_p".into(), json!(t));
    }
    Ok(Value::Object(body))
}

fn invalid(base_model: &str, what: &str) -> ModelError {
    ModelError::new(
        ModelErrorKind::ModelFailed,
        format!("{base_model}'s batch output has no {what}"),
    )
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The answer in a batch record's `modelOutput`.
pub fn answer(base_model: &str, output: &Value) -> Result<ModelResponse, ModelError> {
    let family = Family::of(base_model)
        .ok_or_else(|| refused(format!("{base_model} has no batch inference body here")))?;
    let (content, stop, usage) = match family {
        Family::Anthropic => {
            let blocks = output
                .get("content")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(base_model, "content"))?;
            let content = blocks
                .iter()
                .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                    Some("text") => b
                        .get("text")
                        .and_then(Value::as_str)
                        .map(|t| ContentBlock::Text(t.to_owned())),
                    Some("tool_use") => Some(ContentBlock::ToolUse {
                        id: b["id"].as_str().unwrap_or_default().to_owned(),
                        name: b["name"].as_str().unwrap_or_default().to_owned(),
                        input: b.get("input").cloned().unwrap_or(Value::Null),
                    }),
                    _ => None,
                })
                .collect();
            let u = &output["usage"];
            let usage = TokenUsage {
                input: count(u, "input_tokens"),
                output: count(u, "output_tokens"),
                cache_read: count(u, "cache_read_input_tokens"),
                cache_write: count(u, "cache_creation_input_tokens"),
                ..TokenUsage::default()
            };
            (
                content,
                output["stop_reason"].as_str().unwrap_or("end_turn"),
                usage,
            )
        }
        Family::Nova => {
            let blocks = output
                .pointer("/output/message/content")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid(base_model, "output.message.content"))?;
            let content = blocks
                .iter()
                .filter_map(|b| {
                    if let Some(t) = b.get("text").and_then(Value::as_str) {
                        return Some(ContentBlock::Text(t.to_owned()));
                    }
                    b.get("toolUse").map(|t| ContentBlock::ToolUse {
                        id: t["toolUseId"].as_str().unwrap_or_default().to_owned(),
                        name: t["name"].as_str().unwrap_or_default().to_owned(),
                        input: t.get("input").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect();
            let u = &output["usage"];
            let usage = TokenUsage {
                input: count(u, "inputTokens"),
                output: count(u, "outputTokens"),
                cache_read: count(u, "cacheReadInputTokenCount"),
                cache_write: count(u, "cacheWriteInputTokenCount"),
                ..TokenUsage::default()
            };
            (
                content,
                output["stopReason"].as_str().unwrap_or("end_turn"),
                usage,
            )
        }
        Family::Llama3 => {
            let text = output
                .get("generation")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(base_model, "generation"))?;
            let usage = TokenUsage {
                input: count(output, "prompt_token_count"),
                output: count(output, "generation_token_count"),
                ..TokenUsage::default()
            };
            let stop = match output["stop_reason"].as_str() {
                Some("length") => "max_tokens",
                _ => "end_turn",
            };
            (vec![ContentBlock::Text(text.to_owned())], stop, usage)
        }
    };
    Ok(ModelResponse {
        content,
        stop_reason: StopReason::from_bedrock(stop),
        usage,
        latency_ms: 0,
        citations: Vec::new(),
        served: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_core::model::{InferenceParams, Message};

    fn request() -> ModelRequest {
        ModelRequest {
            system: vec![SystemBlock::Text("Be brief.".into())],
            messages: vec![Message::user("Summarize: the cat sat.")],
            params: InferenceParams {
                max_tokens: Some(200),
                temperature: Some(0.0),
                stop: vec!["END".into()],
                ..InferenceParams::default()
            },
            ..ModelRequest::default()
        }
    }

    #[test]
    fn each_family_gets_its_own_body() {
        let a = body("anthropic.claude-3-5-haiku-20241022-v1:0", &request()).unwrap();
        assert_eq!(a["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(a["max_tokens"], 200);
        assert_eq!(a["system"], "Be brief.");
        assert_eq!(
            a["messages"][0]["content"][0]["text"],
            "Summarize: the cat sat."
        );
        assert_eq!(a["stop_sequences"], json!(["END"]));

        let n = body("amazon.nova-lite-v1:0", &request()).unwrap();
        assert_eq!(n["schemaVersion"], "messages-v1");
        assert_eq!(n["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            n["messages"][0]["content"][0]["text"],
            "Summarize: the cat sat."
        );
        assert_eq!(n["inferenceConfig"]["maxTokens"], 200);
        assert_eq!(n["inferenceConfig"]["stopSequences"], json!(["END"]));

        let l = body("meta.llama3-1-8b-instruct-v1:0", &request()).unwrap();
        let prompt = l["prompt"].as_str().unwrap();
        assert!(
            prompt.starts_with("<|begin_of_text|><|start_header_id|>system"),
            "{prompt}"
        );
        assert!(prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        assert_eq!(l["max_gen_len"], 200);

        let e = body("cohere.command-r-v1:0", &request()).unwrap_err();
        assert!(e.message.contains("cohere.command-r-v1:0"), "{}", e.message);
    }

    #[test]
    fn answers_are_read_back_with_their_usage() {
        let a = answer(
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            &json!({"content": [{"type": "text", "text": "A cat sat."}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 12, "output_tokens": 4}}),
        )
        .unwrap();
        assert_eq!(a.text(), "A cat sat.");
        assert_eq!((a.usage.input, a.usage.output), (12, 4));
        let n = answer(
            "amazon.nova-lite-v1:0",
            &json!({"output": {"message": {"role": "assistant", "content": [{"text": "A cat."}]}},
                    "stopReason": "max_tokens", "usage": {"inputTokens": 9, "outputTokens": 2}}),
        )
        .unwrap();
        assert_eq!(n.stop_reason, StopReason::MaxTokens);
        assert_eq!((n.usage.input, n.usage.output), (9, 2));
        let l = answer(
            "meta.llama3-1-8b-instruct-v1:0",
            &json!({"generation": "Cat.", "prompt_token_count": 20, "generation_token_count": 2, "stop_reason": "length"}),
        )
        .unwrap();
        assert_eq!(l.stop_reason, StopReason::MaxTokens);
        assert!(answer("amazon.nova-lite-v1:0", &json!({"nope": 1})).is_err());
    }
}
