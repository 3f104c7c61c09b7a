//! Helpers shared by the SDK-level test files: an emulator, a client pointed at it, and
//! message builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput as Event, Message, Tool,
    ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

pub const HAIKU_3: &str = "anthropic.claude-3-haiku-20240307-v1:0";
pub const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
pub const SONNET_35: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";
pub const SONNET_37: &str = "anthropic.claude-3-7-sonnet-20250219-v1:0";
pub const SONNET_4: &str = "anthropic.claude-sonnet-4-20250514-v1:0";
pub const NOVA_MICRO: &str = "amazon.nova-micro-v1:0";
pub const NOVA: &str = "amazon.nova-lite-v1:0";
pub const NOVA_PRO: &str = "amazon.nova-pro-v1:0";
pub const LLAMA: &str = "meta.llama3-1-8b-instruct-v1:0";
pub const MISTRAL: &str = "mistral.mistral-large-2407-v1:0";

pub async fn emulator() -> RunningEmulator {
    bedrock_emulator::start(EmulatorConfig::builtin(), "127.0.0.1:0")
        .await
        .unwrap()
}

pub fn client(emulator: &RunningEmulator) -> Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(emulator.url())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

pub fn user(text: &str) -> Message {
    user_blocks(vec![ContentBlock::Text(text.into())])
}

pub fn user_blocks(blocks: Vec<ContentBlock>) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .set_content(Some(blocks))
        .build()
        .unwrap()
}

pub fn assistant_blocks(blocks: Vec<ContentBlock>) -> Message {
    Message::builder()
        .role(ConversationRole::Assistant)
        .set_content(Some(blocks))
        .build()
        .unwrap()
}

pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Document::Number(Number::PosInt(u)),
            (_, Some(i)) => Document::Number(Number::NegInt(i)),
            _ => Document::Number(Number::Float(n.as_f64().unwrap())),
        },
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => Document::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A `get_weather` tool, with the given choice (None: auto).
pub fn weather_tool(
    choice: Option<aws_sdk_bedrockruntime::types::ToolChoice>,
) -> ToolConfiguration {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"]
    });
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .description("Weather forecast for a city")
                .input_schema(ToolInputSchema::Json(to_document(&schema)))
                .build()
                .unwrap(),
        ))
        .set_tool_choice(choice)
        .build()
        .unwrap()
}

pub fn content(out: &ConverseOutput) -> Vec<ContentBlock> {
    out.output()
        .unwrap()
        .as_message()
        .unwrap()
        .content()
        .to_vec()
}

/// A ValidationException's message (panics on anything else).
pub fn validation_message<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    err: SdkError<E, R>,
) -> String {
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    err.message().unwrap().to_owned()
}

/// Every event of a stream, in order.
pub async fn events(out: ConverseStreamOutput) -> Vec<Event> {
    let mut stream = out.stream;
    let mut all = Vec::new();
    while let Some(event) = stream.recv().await.unwrap() {
        all.push(event);
    }
    all
}

/// The text deltas of a stream, joined.
pub fn streamed_text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ContentBlockDelta(d) => d.delta().and_then(|d| d.as_text().ok()).cloned(),
            _ => None,
        })
        .collect()
}
