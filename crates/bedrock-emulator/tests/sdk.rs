//! The emulator through the unmodified aws-sdk-bedrockruntime client: every operation, every
//! ConverseStream event type decoded by the SDK, and every error arriving as the SDK's typed
//! error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, CachePointBlock, CachePointType, ContentBlock, ConversationRole,
    ConverseStreamOutput as Event, ConverseTokensRequest, CountTokensInput, GuardrailContentBlock,
    GuardrailContentSource, GuardrailTextBlock, InferenceConfiguration, Message, ResponseStream,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use bedrock_emulator::RunningEmulator;
use serde_json::{Value, json};

mod common;

use common::{HAIKU, NOVA, client, emulator, to_document, user};

fn weather_tool() -> ToolConfiguration {
    let schema = json!({
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 5}
        },
        "required": ["city", "unit", "days"]
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
        .tool_choice(ToolChoice::Any(AnyToolChoice::builder().build()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn converse_answers_deterministically_with_usage_and_metrics() {
    let emu = emulator().await;
    let c = client(&emu);
    let ask = || {
        c.converse()
            .model_id(HAIKU)
            .messages(user("What is Quarry?"))
            .send()
    };
    let a = ask().await.unwrap();
    let b = ask().await.unwrap();
    let text = |o: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput| {
        o.output().unwrap().as_message().unwrap().content()[0]
            .as_text()
            .unwrap()
            .clone()
    };
    assert_eq!(text(&a), text(&b));
    assert!(!text(&a).is_empty());
    assert_eq!(a.stop_reason().as_str(), "end_turn");
    let usage = a.usage().unwrap();
    assert!(usage.input_tokens() > 0 && usage.output_tokens() > 0);
    assert_eq!(
        usage.total_tokens(),
        usage.input_tokens() + usage.output_tokens()
    );
    assert!(a.metrics().is_some());
    // A different question gets a different answer.
    let other = c
        .converse()
        .model_id(HAIKU)
        .messages(user("Something else"))
        .send()
        .await
        .unwrap();
    assert_ne!(text(&other), text(&a));
}

#[tokio::test]
async fn request_metadata_is_checked_as_bedrock_does() {
    let emu = emulator().await;
    let c = client(&emu);
    let send = |entries: Vec<(String, String)>| {
        let mut call = c.converse().model_id(NOVA).messages(user("hi"));
        for (k, v) in entries {
            call = call.request_metadata(k, v);
        }
        call.send()
    };
    assert!(
        send(vec![("feature".into(), "search team".into())])
            .await
            .is_ok()
    );
    for bad in [
        (0..17)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect::<Vec<_>>(),
        vec![("feature".into(), "naïve".into())],
        vec![("k".into(), "v".repeat(257))],
    ] {
        let err = send(bad).await.unwrap_err();
        assert!(err.into_service_error().is_validation_exception());
    }
}

#[tokio::test]
async fn converse_honours_max_tokens() {
    let emu = emulator().await;
    let out = client(&emu)
        .converse()
        .model_id(NOVA)
        .messages(user("Tell me a long story"))
        .inference_config(InferenceConfiguration::builder().max_tokens(3).build())
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason().as_str(), "max_tokens");
    assert_eq!(out.usage().unwrap().output_tokens(), 3);
}

#[tokio::test]
async fn forced_tool_use_emits_input_that_fits_the_schema() {
    let emu = emulator().await;
    let out = client(&emu)
        .converse()
        .model_id(HAIKU)
        .messages(user("Weather in Paris?"))
        .tool_config(weather_tool())
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason().as_str(), "tool_use");
    let content = out.output().unwrap().as_message().unwrap().content();
    let tool_use = content[0].as_tool_use().unwrap();
    assert_eq!(tool_use.name(), "get_weather");
    assert!(tool_use.tool_use_id().starts_with("tooluse_"));
    let Document::Object(input) = tool_use.input() else {
        panic!("input is not an object")
    };
    assert!(matches!(input.get("city"), Some(Document::String(_))));
    let Some(Document::String(unit)) = input.get("unit") else {
        panic!("no unit")
    };
    assert!(unit == "celsius" || unit == "fahrenheit");
    let Some(Document::Number(days)) = input.get("days") else {
        panic!("no days")
    };
    assert!((1..=5).contains(&days.to_i64_lossy()));
}

trait LossyI64 {
    fn to_i64_lossy(&self) -> i64;
}
impl LossyI64 for Number {
    fn to_i64_lossy(&self) -> i64 {
        match *self {
            Number::PosInt(u) => u as i64,
            Number::NegInt(i) => i,
            Number::Float(f) => f as i64,
        }
    }
}

#[tokio::test]
async fn converse_stream_sends_every_event_type_and_matches_converse() {
    let emu = emulator().await;
    let c = client(&emu);
    let whole = c
        .converse()
        .model_id(HAIKU)
        .messages(user("Stream please"))
        .send()
        .await
        .unwrap();
    let whole_text = whole.output().unwrap().as_message().unwrap().content()[0]
        .as_text()
        .unwrap()
        .clone();

    let mut stream = c
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Stream please"))
        .send()
        .await
        .unwrap()
        .stream;
    let mut kinds = Vec::new();
    let mut text = String::new();
    let mut usage = None;
    while let Some(event) = stream.recv().await.unwrap() {
        match &event {
            Event::MessageStart(m) => assert_eq!(m.role(), &ConversationRole::Assistant),
            Event::ContentBlockDelta(d) => text.push_str(d.delta().unwrap().as_text().unwrap()),
            Event::MessageStop(s) => assert_eq!(s.stop_reason().as_str(), "end_turn"),
            Event::Metadata(m) => {
                usage = m.usage().cloned();
                assert!(m.metrics().is_some());
            }
            _ => {}
        }
        kinds.push(format!("{event:?}").split('(').next().unwrap().to_owned());
    }
    assert_eq!(text, whole_text);
    assert_eq!(kinds.first().unwrap(), "MessageStart");
    assert!(kinds.contains(&"ContentBlockStop".to_owned()));
    assert_eq!(&kinds[kinds.len() - 2..], ["MessageStop", "Metadata"]);
    assert_eq!(
        usage.unwrap().output_tokens(),
        whole.usage().unwrap().output_tokens()
    );
}

#[tokio::test]
async fn converse_stream_tool_use_has_start_and_tool_deltas() {
    let emu = emulator().await;
    let mut stream = client(&emu)
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Weather?"))
        .tool_config(weather_tool())
        .send()
        .await
        .unwrap()
        .stream;
    let mut started = false;
    let mut input = String::new();
    let mut stop = None;
    while let Some(event) = stream.recv().await.unwrap() {
        match event {
            Event::ContentBlockStart(s) => {
                let start = s.start().unwrap().as_tool_use().unwrap();
                assert_eq!(start.name(), "get_weather");
                started = true;
            }
            Event::ContentBlockDelta(d) => {
                input.push_str(d.delta().unwrap().as_tool_use().unwrap().input())
            }
            Event::MessageStop(s) => stop = Some(s.stop_reason().as_str().to_owned()),
            _ => {}
        }
    }
    assert!(started);
    let parsed: Value = serde_json::from_str(&input).unwrap();
    assert!(parsed["city"].is_string());
    assert_eq!(stop.as_deref(), Some("tool_use"));
}

#[tokio::test]
async fn invoke_model_speaks_anthropic_messages_and_llamas_body() {
    let emu = emulator().await;
    let c = client(&emu);
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hello"}]
    });
    let out = c
        .invoke_model()
        .model_id(format!("us.{HAIKU}"))
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["type"], "text");
    assert!(answer["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(answer["stop_reason"], "end_turn");

    let out = c
        .invoke_model()
        .model_id("meta.llama3-1-8b-instruct-v1:0")
        .body(Blob::new(
            json!({"prompt": "Hi", "max_gen_len": 5}).to_string(),
        ))
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
    assert_eq!(answer["generation_token_count"], 5);
    assert_eq!(answer["stop_reason"], "length");
}

#[tokio::test]
async fn invoke_model_with_response_stream_sends_chunks() {
    let emu = emulator().await;
    let c = client(&emu);
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    });
    let mut stream = c
        .invoke_model_with_response_stream()
        .model_id(HAIKU)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap()
        .body;
    let mut types = Vec::new();
    let mut text = String::new();
    while let Some(event) = stream.recv().await.unwrap() {
        let ResponseStream::Chunk(part) = event else {
            panic!("unexpected event {event:?}")
        };
        let chunk: Value = serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap();
        if chunk["type"] == "content_block_delta" {
            text.push_str(chunk["delta"]["text"].as_str().unwrap());
        }
        types.push(chunk["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(types.first().unwrap(), "message_start");
    assert_eq!(types.last().unwrap(), "message_stop");
    assert!(types.contains(&"message_delta".to_owned()));
    assert!(!text.is_empty());
}

async fn set_faults(emu: &RunningEmulator, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

type IsKind = fn(&ConverseError) -> bool;

#[tokio::test]
async fn each_injected_error_arrives_as_the_sdks_typed_error() {
    let emu = emulator().await;
    let c = client(&emu);
    let cases: &[(&str, IsKind)] = &[
        (
            "ThrottlingException",
            ConverseError::is_throttling_exception,
        ),
        (
            "ServiceUnavailableException",
            ConverseError::is_service_unavailable_exception,
        ),
        (
            "ModelTimeoutException",
            ConverseError::is_model_timeout_exception,
        ),
        (
            "ModelNotReadyException",
            ConverseError::is_model_not_ready_exception,
        ),
        (
            "ModelErrorException",
            ConverseError::is_model_error_exception,
        ),
        (
            "InternalServerException",
            ConverseError::is_internal_server_exception,
        ),
        (
            "AccessDeniedException",
            ConverseError::is_access_denied_exception,
        ),
        (
            "ResourceNotFoundException",
            ConverseError::is_resource_not_found_exception,
        ),
        (
            "ValidationException",
            ConverseError::is_validation_exception,
        ),
    ];
    for (kind, check) in cases {
        set_faults(
            &emu,
            json!({"model": NOVA, "error_next": {"kind": kind, "count": 1}}),
        )
        .await;
        let err = c
            .converse()
            .model_id(NOVA)
            .messages(user("hi"))
            .send()
            .await
            .unwrap_err();
        let service = err.into_service_error();
        assert!(check(&service), "{kind}: got {service:?}");
        assert_eq!(service.code(), Some(*kind));
        assert!(service.message().is_some_and(|m| !m.is_empty()));
    }
    // The fault was consumed: the next call succeeds.
    c.converse()
        .model_id(NOVA)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn bedrock_validation_of_common_mistakes() {
    let emu = emulator().await;
    let c = client(&emu);
    let assistant_first = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap();
    let err = c
        .converse()
        .model_id(NOVA)
        .messages(assistant_first)
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_validation_exception());
    assert!(err.message().unwrap().contains("start with a user message"));

    let err = c
        .converse()
        .model_id(NOVA)
        .messages(user("hi"))
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(1_000_000)
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_validation_exception());
    assert!(err.message().unwrap().contains("model limit"));

    let err = c
        .converse()
        .model_id(NOVA)
        .messages(user("   "))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_validation_exception());

    let err = c
        .converse()
        .model_id("acme.unknown-v1:0")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_validation_exception());
    assert!(
        err.message()
            .unwrap()
            .contains("model identifier is invalid")
    );
}

#[tokio::test]
async fn mid_stream_exception_after_http_200() {
    let emu = emulator().await;
    set_faults(&emu, json!({"model": HAIKU, "mid_stream_error_after": 3})).await;
    let mut stream = client(&emu)
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Stream then fail"))
        .send()
        .await
        .unwrap()
        .stream;
    let mut deltas = 0;
    let error = loop {
        match stream.recv().await {
            Ok(Some(Event::ContentBlockDelta(_))) => deltas += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended without the injected error"),
            Err(e) => break e,
        }
    };
    assert_eq!(deltas, 3);
    let service = error.into_service_error();
    assert!(service.is_model_stream_error_exception(), "{service:?}");
}

#[tokio::test]
async fn model_ids_profiles_and_arns_resolve_through_the_sdk() {
    let emu = emulator().await;
    let c = client(&emu);
    for id in [
        format!("us.{HAIKU}"),
        format!("global.{HAIKU}"),
        format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"),
        format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.{HAIKU}"),
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/quarry-demo"
            .to_owned(),
    ] {
        c.converse()
            .model_id(&id)
            .messages(user("hi"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
    }
    assert_eq!(emu.state().calls(Some("Converse"), Some(HAIKU)), 5);
    let err = c
        .converse()
        .model_id("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/missing")
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn prompt_cache_writes_then_reads() {
    let emu = emulator().await;
    let c = client(&emu);
    let long_system = "You are a careful assistant. ".repeat(400);
    let ask = || {
        c.converse()
            .model_id(HAIKU)
            .system(SystemContentBlock::Text(long_system.clone()))
            .system(SystemContentBlock::CachePoint(
                CachePointBlock::builder()
                    .r#type(CachePointType::Default)
                    .build()
                    .unwrap(),
            ))
            .messages(user("hi"))
            .send()
    };
    let first = ask().await.unwrap();
    let second = ask().await.unwrap();
    let (u1, u2) = (first.usage().unwrap(), second.usage().unwrap());
    assert!(u1.cache_write_input_tokens().unwrap() >= 2048);
    assert_eq!(u1.cache_read_input_tokens(), Some(0));
    assert_eq!(u2.cache_read_input_tokens(), u1.cache_write_input_tokens());
    assert_eq!(u2.cache_write_input_tokens(), Some(0));
    assert_eq!(u1.input_tokens(), u2.input_tokens());
    assert!(u1.input_tokens() < 20);
    assert_eq!(
        u1.total_tokens(),
        u1.input_tokens() + u1.output_tokens() + u1.cache_write_input_tokens().unwrap()
    );
}

#[tokio::test]
async fn apply_guardrail_reports_contextual_grounding_through_the_sdk() {
    use aws_sdk_bedrockruntime::types::GuardrailContentQualifier as Q;
    let emu = common::emulator_with(
        "guardrails:\n  grounded:\n    contextual_grounding: {grounding_threshold: 0.7, relevance_threshold: 0.5}\n",
    )
    .await;
    let block = |text: &str, q: Q| {
        GuardrailContentBlock::Text(
            GuardrailTextBlock::builder()
                .text(text)
                .qualifiers(q)
                .build()
                .unwrap(),
        )
    };
    let out = client(&emu)
        .apply_guardrail()
        .guardrail_identifier("grounded")
        .guardrail_version("DRAFT")
        .source(GuardrailContentSource::Output)
        .content(block(
            "Quarry keeps backups for thirty days.",
            Q::GroundingSource,
        ))
        .content(block("How long are backups kept?", Q::Query))
        .content(block("Backups are kept forever on tape.", Q::GuardContent))
        .send()
        .await
        .unwrap();
    assert_eq!(out.action().as_str(), "GUARDRAIL_INTERVENED");
    let filters = out.assessments()[0]
        .contextual_grounding_policy()
        .unwrap()
        .filters();
    assert_eq!(filters[0].r#type().as_str(), "GROUNDING");
    assert_eq!(filters[0].action().as_str(), "BLOCKED");
    assert!(filters[0].score() < filters[0].threshold());
    assert_eq!(filters[0].detected(), Some(true));
    assert_eq!(filters[1].r#type().as_str(), "RELEVANCE");
}

#[tokio::test]
async fn apply_guardrail_anonymizes_and_blocks() {
    let emu = emulator().await;
    let c = client(&emu);
    let apply = |text: &str| {
        c.apply_guardrail()
            .guardrail_identifier("quarrydefault")
            .guardrail_version("DRAFT")
            .source(GuardrailContentSource::Input)
            .content(GuardrailContentBlock::Text(
                GuardrailTextBlock::builder().text(text).build().unwrap(),
            ))
            .send()
    };
    let out = apply("mail me at jane@example.com").await.unwrap();
    assert_eq!(out.action().as_str(), "GUARDRAIL_INTERVENED");
    assert_eq!(out.outputs()[0].text(), Some("mail me at {EMAIL}"));
    let out = apply("my ssn is 123-45-6789").await.unwrap();
    assert_eq!(out.action().as_str(), "GUARDRAIL_INTERVENED");
    assert!(out.outputs()[0].text().unwrap().contains("cannot answer"));
    let out = apply("nothing to see").await.unwrap();
    assert_eq!(out.action().as_str(), "NONE");
    let err = c
        .apply_guardrail()
        .guardrail_identifier("nope")
        .guardrail_version("1")
        .source(GuardrailContentSource::Output)
        .content(GuardrailContentBlock::Text(
            GuardrailTextBlock::builder().text("x").build().unwrap(),
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
    // Identifiers and versions outside Bedrock's patterns are a ValidationException.
    for (id, version) in [
        ("has-dash", "DRAFT"),
        ("UPPER", "1"),
        ("abc", "0"),
        ("abc", "draft"),
    ] {
        let err = c
            .apply_guardrail()
            .guardrail_identifier(id)
            .guardrail_version(version)
            .source(GuardrailContentSource::Output)
            .content(GuardrailContentBlock::Text(
                GuardrailTextBlock::builder().text("x").build().unwrap(),
            ))
            .send()
            .await
            .unwrap_err();
        assert!(
            err.into_service_error().is_validation_exception(),
            "{id} {version}"
        );
    }
}

#[tokio::test]
async fn count_tokens_matches_converse_usage() {
    let emu = emulator().await;
    let c = client(&emu);
    let out = c
        .converse()
        .model_id(HAIKU)
        .messages(user("Count these tokens please"))
        .send()
        .await
        .unwrap();
    let counted = c
        .count_tokens()
        .model_id(HAIKU)
        .input(CountTokensInput::Converse(
            ConverseTokensRequest::builder()
                .messages(user("Count these tokens please"))
                .build(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.input_tokens(), out.usage().unwrap().input_tokens());
}
