//! The request parsers of the chat API, exactly as the router calls them: the body bytes
//! through `parse_json` into the native `ChatRequest` (`POST /v1/chat`), the OpenAI
//! `CompletionRequest` (`POST /v1/chat/completions`) and Anthropic's `MessagesRequest`
//! (`POST /v1/messages`, with an `anthropic-beta` header), then into `ChatInput`.
//!
//! Properties: never a panic; a failure is a client error (400 naming a field, or 413), and
//! "not valid JSON" only for bytes that are not JSON; a success is a request that passed
//! every documented check (parameter ranges, size limits, exclusive fields) and says what
//! the body said.

#![no_main]

use bytes::Bytes;
use chat_handler::Options;
use chat_handler::routes::anthropic::Anthropic;
use chat_handler::routes::chat::{ChatApi, Parsed};
use chat_handler::routes::native::Native;
use chat_handler::routes::openai::OpenAi;
use libfuzzer_sys::fuzz_target;
use quarry_core::Error;
use quarry_core::model::{ContentBlock, InferenceParams, Role, ToolChoice};
use quarry_core::prompts::PromptSelector;
use quarry_core::routing::RouteSpec;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let options = Options::default();
    let body = Bytes::copy_from_slice(data);
    let json: Option<Value> = serde_json::from_slice(data).ok();
    // serde_json skips ignored values without checking their UTF-8, so the OpenAI API (which
    // ignores unknown fields) accepts a body with invalid UTF-8 in one: read such a body as
    // the parser did, with the invalid bytes replaced.
    let lenient = json
        .clone()
        .or_else(|| serde_json::from_str(&String::from_utf8_lossy(data)).ok());

    let none = http::HeaderMap::new();
    match Native::parse(&body, &none, &options) {
        Ok(parsed) => check_native(&parsed, json.as_ref(), &options),
        Err(e) => check_error(&e, json.as_ref()),
    }
    match OpenAi::parse(&body, &none, &options) {
        Ok(parsed) => check_openai(&parsed, lenient.as_ref(), &options),
        Err(e) => check_error(&e, json.as_ref()),
    }
    let mut betas = http::HeaderMap::new();
    betas.insert(
        "anthropic-beta",
        http::HeaderValue::from_static("claude-code-20250219,interleaved-thinking-2025-05-14"),
    );
    match Anthropic::parse(&body, &betas, &options) {
        Ok(parsed) => check_messages(&parsed),
        Err(e) => check_error(&e, json.as_ref()),
    }
});

/// A Messages request: messages in order, reasoning first in each, betas Bedrock takes.
fn check_messages(parsed: &Parsed) {
    let input = &parsed.input;
    check_params(&input.params);
    assert!(input.params.max_tokens.is_some(), "max_tokens is required");
    assert!(!input.messages.is_empty());
    for m in &input.messages {
        assert!(!m.content.is_empty());
        let first_other = m.content.iter().position(|b| {
            !matches!(
                b,
                ContentBlock::Reasoning { .. } | ContentBlock::RedactedReasoning(_)
            )
        });
        if let Some(at) = first_other {
            assert!(
                m.content[at..].iter().all(|b| !matches!(
                    b,
                    ContentBlock::Reasoning { .. } | ContentBlock::RedactedReasoning(_)
                )),
                "reasoning after other content"
            );
        }
    }
    assert_eq!(input.anthropic_beta, ["interleaved-thinking-2025-05-14"]);
}

fn check_error(e: &Error, json: Option<&Value>) {
    match e {
        Error::BadRequest { field, message } => {
            // The field may be "" only when the body has a key "" (an unknown field).
            let field = field.as_deref().expect("a 400 that names no field");
            assert!(!message.is_empty());
            if message.starts_with("the body is not valid JSON") {
                assert_eq!(field, "body");
                assert!(json.is_none(), "valid JSON refused as invalid: {message}");
            }
        }
        Error::PayloadTooLarge(_) => {}
        other => panic!("parsing gave a non-client error: {other:?}"),
    }
}

fn check_params(p: &InferenceParams) {
    if let Some(t) = p.temperature {
        assert!((0.0..=1.0).contains(&t), "temperature {t} accepted");
    }
    if let Some(t) = p.top_p {
        assert!((0.0..=1.0).contains(&t), "top_p {t} accepted");
    }
    assert_ne!(p.max_tokens, Some(0));
    assert!(p.stop.len() <= 4 && p.stop.iter().all(|s| !s.is_empty()));
}

fn block_chars(b: &ContentBlock) -> usize {
    match b {
        ContentBlock::Text(t) => t.len(),
        _ => 0,
    }
}

fn is_set(obj: &serde_json::Map<String, Value>, key: &str) -> bool {
    obj.get(key).is_some_and(|v| !v.is_null())
}

fn check_native(parsed: &Parsed, json: Option<&Value>, options: &Options) {
    let obj = json
        .and_then(Value::as_object)
        .expect("the native API accepted a body that is not a JSON object");
    let input = &parsed.input;
    check_params(&input.params);
    assert!(input.messages.len() <= options.max_messages);
    let chars: usize = input
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .map(block_chars)
        .sum::<usize>()
        + input.system.iter().map(String::len).sum::<usize>()
        + input
            .variables
            .values()
            .map(|v| v.to_string().len())
            .sum::<usize>();
    assert!(chars <= options.max_total_chars);
    for m in &input.messages {
        assert!(matches!(m.role, Role::User | Role::Assistant));
        for b in &m.content {
            match b {
                ContentBlock::Text(_) | ContentBlock::CachePoint => {}
                // Media that passed is media Bedrock takes.
                ContentBlock::Image(i) => assert!(quarry_core::media::check_image(i).is_ok()),
                ContentBlock::Document(d) => {
                    assert!(quarry_core::media::check_document(d).is_ok())
                }
                // Reasoning sent back is signed (unsigned reasoning is left out).
                ContentBlock::Reasoning { signature, .. } => assert!(signature.is_some()),
                ContentBlock::RedactedReasoning(_) => {}
                other => panic!("the native API made a {other:?} block"),
            }
        }
    }
    assert!(input.tools.is_empty() && input.tool_choice.is_none());
    assert!(input.system.len() <= 1);
    // Exclusive fields and what the body said.
    assert_eq!(parsed.stream, obj.get("stream") == Some(&Value::Bool(true)));
    match &input.prompt {
        Some(p) => {
            assert_eq!(
                obj.get("prompt").and_then(Value::as_str),
                Some(p.name.as_str())
            );
            match &p.selector {
                Some(PromptSelector::Version(v)) => {
                    assert_eq!(obj.get("version").and_then(Value::as_u64), Some(v.clone()));
                    assert!(!is_set(obj, "label"));
                }
                Some(PromptSelector::Label(l)) => {
                    assert_eq!(obj.get("label").and_then(Value::as_str), Some(l.as_str()));
                    assert!(!is_set(obj, "version"));
                }
                Some(other) => panic!("unexpected selector {other:?}"),
                None => assert!(!is_set(obj, "version") && !is_set(obj, "label")),
            }
        }
        None => {
            for key in ["prompt", "version", "label", "ab_key"] {
                assert!(!is_set(obj, key), "'{key}' lost without a prompt");
            }
        }
    }
    match &input.route {
        Some(RouteSpec::Tier(t)) => {
            assert_eq!(obj.get("tier").and_then(Value::as_str), Some(t.as_str()));
            assert!(!is_set(obj, "model"));
        }
        Some(RouteSpec::Model(m)) => {
            assert_eq!(obj.get("model").and_then(Value::as_str), Some(m.as_str()));
            assert!(!is_set(obj, "tier"));
        }
        None => assert!(!is_set(obj, "tier") && !is_set(obj, "model")),
    }
    if let Some(schema) = &input.output_schema {
        assert!(schema.is_object());
        assert_eq!(obj.get("response_format"), Some(schema));
    }
    if let Some(vars) = obj.get("variables") {
        assert_eq!(vars.as_object(), Some(&input.variables));
    }
}

fn check_openai(parsed: &Parsed, json: Option<&Value>, options: &Options) {
    let obj = json
        .and_then(Value::as_object)
        .expect("the OpenAI API accepted a body that is not a JSON object");
    let input = &parsed.input;
    check_params(&input.params);
    let sent = obj
        .get("messages")
        .and_then(Value::as_array)
        .expect("accepted without a messages array");
    assert!(sent.len() <= options.max_messages);
    // Bedrock wants alternating roles: consecutive same-role messages are merged.
    assert!(!input.messages.is_empty());
    for pair in input.messages.windows(2) {
        assert_ne!(
            pair[0].role, pair[1].role,
            "two consecutive messages, same role"
        );
    }
    for m in &input.messages {
        assert!(!m.content.is_empty(), "a message without content");
    }
    let system_sent = sent
        .iter()
        .filter(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        })
        .count();
    // `tool_choice: none` with tool calls in the history adds one instruction.
    let none_with_history = obj.get("tool_choice").and_then(Value::as_str) == Some("none")
        && input.tool_choice.is_some();
    assert_eq!(
        input.system.len(),
        system_sent + usize::from(none_with_history)
    );
    assert_eq!(
        input.route,
        Some(RouteSpec::Model(
            obj.get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        ))
    );
    if let Some(ToolChoice::Tool(name)) = &input.tool_choice {
        assert!(
            input.tools.iter().any(|t| &t.name == name),
            "tool_choice names no tool"
        );
    }
    if obj.get("tool_choice").and_then(Value::as_str) == Some("none") {
        // No tools, or (a history with tool calls needs them declared) tools the model is
        // told not to call.
        assert!(
            (input.tools.is_empty() && input.tool_choice.is_none())
                || input.tool_choice == Some(ToolChoice::Auto)
        );
    }
    assert_eq!(parsed.stream, obj.get("stream") == Some(&Value::Bool(true)));
    if parsed.include_usage {
        let asked = obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"));
        assert_eq!(asked, Some(&Value::Bool(true)));
    }
    assert_eq!(parsed.cache, quarry_core::service::CacheMode::Auto);
}
