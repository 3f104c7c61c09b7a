//! Helpers shared by the SDK-level test files: an emulator, a client pointed at it, and
//! message builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
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

pub mod embeddings;

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
pub const TITAN_EMBED: &str = "amazon.titan-embed-text-v2:0";
pub const COHERE_EMBED: &str = "cohere.embed-english-v3";
pub const COHERE_EMBED_MULTI: &str = "cohere.embed-multilingual-v3";
pub const COHERE_EMBED_V4: &str = "cohere.embed-v4:0";

pub async fn emulator() -> RunningEmulator {
    bedrock_emulator::start(EmulatorConfig::builtin(), "127.0.0.1:0")
        .await
        .unwrap()
}

/// An emulator with the built-in catalog and `yaml` laid over it.
pub async fn emulator_with(yaml: &str) -> RunningEmulator {
    let config = EmulatorConfig::from_yaml_over_builtin(yaml).unwrap();
    bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap()
}

fn config_builder(emulator: &RunningEmulator) -> aws_sdk_bedrockruntime::config::Builder {
    config_builder_in(emulator, "us-east-1")
}

fn config_builder_in(
    emulator: &RunningEmulator,
    region: &str,
) -> aws_sdk_bedrockruntime::config::Builder {
    aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(emulator.url())
        .retry_config(RetryConfig::disabled())
}

pub fn client(emulator: &RunningEmulator) -> Client {
    Client::from_conf(config_builder(emulator).build())
}

/// A runtime client configured for `region`: its calls are signed for that region.
pub fn client_in(emulator: &RunningEmulator, region: &str) -> Client {
    Client::from_conf(config_builder_in(emulator, region).build())
}

/// A control-plane (`bedrock`) client configured for `region`.
pub fn control_client_in(emulator: &RunningEmulator, region: &str) -> aws_sdk_bedrock::Client {
    let config = aws_sdk_bedrock::Config::builder()
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrock::config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_bedrock::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(emulator.url())
        .retry_config(aws_sdk_bedrock::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_bedrock::Client::from_conf(config)
}

/// The response headers of a client's last call. InvokeModel's output leaves Bedrock's
/// usage headers out, so an interceptor reads them off the HTTP response.
#[derive(Debug, Clone, Default)]
pub struct SeenHeaders(Arc<Mutex<Vec<(String, String)>>>);

impl SeenHeaders {
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// A header's value as a number (panics when absent).
    pub fn number(&self, name: &str) -> u64 {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .parse()
            .unwrap()
    }
}

impl Intercept for SeenHeaders {
    fn name(&self) -> &'static str {
        "SeenHeaders"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut seen = self.0.lock().unwrap();
        seen.clear();
        for (name, value) in context.response().headers().iter() {
            seen.push((name.to_owned(), value.to_owned()));
        }
        Ok(())
    }
}

/// A client whose calls' response headers can be read.
pub fn client_seeing_headers(emulator: &RunningEmulator) -> (Client, SeenHeaders) {
    let seen = SeenHeaders::default();
    let config = config_builder(emulator).interceptor(seen.clone()).build();
    (Client::from_conf(config), seen)
}

/// Sets faults through the admin API.
pub async fn set_faults(emulator: &RunningEmulator, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emulator.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
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
