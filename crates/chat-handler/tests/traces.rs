//! Traces end to end: the chat API against moto and the emulator, its spans exported to
//! memory by the production layer. A request's span joins the trace its X-Ray header names;
//! each model call, retrieval and guardrail check is a child span; Bedrock receives the
//! trace; no span carries the request's text, the answer's or the API key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../integration-tests/tests/common/mod.rs"]
mod stack;

use std::sync::Arc;
use std::time::Duration;

use bedrock_emulator::ErrorKind;
use chat_handler::{AppState, app};
use opentelemetry::Value as Attr;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use quarry_core::invoke::RetryPolicy;
use quarry_testkit::{Stack, eventually};
use serde_json::{Value, json};
use stack::{fault, options, state};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const NOVA_LITE: &str = "amazon.nova-lite-v1:0";

/// Spans exported to memory while the guard lives (this thread: tokio tests run on one).
struct Traces {
    exporter: InMemorySpanExporter,
    _provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

fn traces() -> Traces {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(quarry_aws::traces::layer_for(&provider));
    let guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    Traces {
        exporter,
        _provider: provider,
        _guard: guard,
    }
}

impl Traces {
    /// The ended spans of trace `trace_id` (hex), once its request span has ended.
    async fn of(&self, trace_id: &str) -> Vec<SpanData> {
        let spans = eventually(Duration::from_secs(5), || async {
            let spans: Vec<SpanData> = self
                .exporter
                .get_finished_spans()
                .unwrap()
                .into_iter()
                .filter(|s| s.span_context.trace_id().to_string() == trace_id)
                .collect();
            spans
                .iter()
                .any(|s| attr(s, "http.route").is_some())
                .then_some(spans)
        })
        .await;
        spans.unwrap_or_else(|| panic!("no request span in trace {trace_id}"))
    }
}

fn attr(span: &SpanData, key: &str) -> Option<Attr> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn text(span: &SpanData, key: &str) -> String {
    attr(span, key).map(|v| v.to_string()).unwrap_or_default()
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Attr::I64(i)) => i,
        other => panic!("{key} is {other:?} on {}", span.name),
    }
}

/// The one request span of `spans`.
fn request(spans: &[SpanData]) -> &SpanData {
    let requests: Vec<_> = spans
        .iter()
        .filter(|s| attr(s, "http.route").is_some())
        .collect();
    assert_eq!(requests.len(), 1, "{spans:#?}");
    requests[0]
}

/// The spans named `{prefix}...` right under `parent`, in the order they started.
fn children<'a>(spans: &'a [SpanData], parent: &SpanData, prefix: &str) -> Vec<&'a SpanData> {
    let mut out: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_context.span_id() && s.name.starts_with(prefix))
        .collect();
    out.sort_by_key(|s| s.start_time);
    out
}

/// No attribute of any span contains any of `secrets`.
fn assert_no_content(spans: &[SpanData], secrets: &[&str]) {
    for span in spans {
        assert!(
            secrets.iter().all(|s| !span.name.contains(s)),
            "{}",
            span.name
        );
        for kv in &span.attributes {
            let v = kv.value.to_string();
            for s in secrets {
                assert!(
                    !v.contains(s),
                    "{} = {v:?} on {} carries content",
                    kv.key,
                    span.name
                );
            }
        }
        assert!(span.events.is_empty(), "events on {}", span.name);
    }
}

/// A trace header with a fresh Root; returns (header, trace ID as hex).
fn header(n: u32) -> (String, String) {
    let id = format!("5759e988bd862e3fe1be46a99427{n:04x}");
    (
        format!(
            "Root=1-{}-{};Parent=53995c3f42cd8ad8;Sampled=1",
            &id[..8],
            &id[8..]
        ),
        id,
    )
}

/// POST /v1/chat with the trace header; the reply's body (JSON, or the SSE text).
async fn chat(state: &Arc<AppState>, key: &str, trace: &str, body: Value) -> (u16, String) {
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/chat")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("x-amzn-trace-id", trace)
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The Bedrock requests `operation` the emulator recorded, with their trace headers.
fn recorded_headers(stack: &Stack, operation: &str) -> Vec<String> {
    stack
        .emulator
        .state()
        .recorded(200)
        .into_iter()
        .filter(|r| r.operation == operation)
        .map(|r| r.trace_header.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_prompt_with_retrieval_is_one_request_span_with_its_calls_under_it() {
    let traces = traces();
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let question = "How much does Acme pay per sensor each month?";
    let (trace, trace_id) = header(1);
    let (status, body) = chat(
        &s,
        key,
        &trace,
        json!({"prompt": "docs-qa", "variables": {"question": question}, "max_tokens": 200}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let answer = body["output"]["text"].as_str().unwrap().to_owned();
    assert!(answer.len() > 20, "{body}");

    let spans = traces.of(&trace_id).await;
    let req = request(&spans);
    // In the caller's trace, under the caller's span.
    assert_eq!(req.parent_span_id.to_string(), "53995c3f42cd8ad8");
    assert!(req.parent_span_is_remote);
    let model = body["model"].as_str().unwrap();
    assert_eq!(req.name, format!("chat {model}"));
    assert_eq!(text(req, "gen_ai.operation.name"), "chat");
    assert_eq!(text(req, "gen_ai.system"), "aws.bedrock");
    assert_eq!(text(req, "gen_ai.request.model"), model);
    assert_eq!(text(req, "gen_ai.response.model"), model);
    assert_eq!(int(req, "gen_ai.request.max_tokens"), 200);
    assert_eq!(text(req, "quarry.tenant"), "acme");
    assert_eq!(text(req, "quarry.prompt.name"), "docs-qa");
    assert_eq!(
        int(req, "quarry.prompt.version"),
        body["prompt"]["version"].as_i64().unwrap()
    );
    assert_eq!(attr(req, "quarry.cache_hit"), Some(Attr::Bool(false)));
    assert_eq!(int(req, "quarry.fallback"), 0);
    assert!(matches!(attr(req, "quarry.cost_usd"), Some(Attr::F64(c)) if c > 0.0));
    assert_eq!(
        int(req, "gen_ai.usage.output_tokens"),
        body["usage"]["output_tokens"].as_i64().unwrap()
    );
    assert!(int(req, "gen_ai.usage.input_tokens") > 0);
    assert_eq!(text(req, "gen_ai.response.finish_reasons"), "end_turn");
    assert_eq!(req.status, Status::Unset);

    let attempts = children(&spans, req, "chat ");
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt.name, format!("chat {model}"));
    assert_eq!(int(attempt, "quarry.attempt"), 1);
    assert_eq!(text(attempt, "quarry.region"), "home");
    assert_eq!(text(attempt, "gen_ai.request.model"), model);
    assert!(int(attempt, "gen_ai.usage.output_tokens") > 0);
    assert_eq!(children(&spans, req, "retrieve ").len(), 1);
    let retrieval = children(&spans, req, "retrieve ")[0];
    assert_eq!(text(retrieval, "quarry.knowledge_base"), "QUARRYDOCS");
    assert!(int(retrieval, "quarry.retrieval.results") > 0);
    assert_eq!(children(&spans, req, "guardrail input").len(), 1);
    assert_eq!(children(&spans, req, "guardrail output").len(), 1);

    assert_no_content(&spans, &[question, "Acme pay per sensor", &answer, key]);

    // Bedrock got the trace, naming the attempt's span as the caller.
    let converse = recorded_headers(&stack, "Converse");
    let expected = format!(
        "Root=1-{}-{};Parent={};Sampled=1",
        &trace_id[..8],
        &trace_id[8..],
        attempt.span_context.span_id()
    );
    assert!(converse.contains(&expected), "{converse:?} vs {expected}");
    // So did Knowledge Bases, naming the retrieval's span.
    let retrieve = recorded_headers(&stack, "Retrieve");
    let expected = format!(
        "Root=1-{}-{};Parent={};Sampled=1",
        &trace_id[..8],
        &trace_id[8..],
        retrieval.span_context.span_id()
    );
    assert!(retrieve.contains(&expected), "{retrieve:?} vs {expected}");
}

#[tokio::test]
async fn a_fallback_is_two_attempts_the_first_in_error() {
    let traces = traces();
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| {
        f.outage = Some(ErrorKind::ThrottlingException)
    });
    let once = chat_handler::Options {
        retry: RetryPolicy {
            max_attempts_per_model: 1,
            ..options().retry
        },
        ..options()
    };
    let s = state(&stack, once);
    let (trace, trace_id) = header(2);
    let (status, body) = chat(
        &s,
        stack.key("acme"),
        &trace,
        json!({"messages": [{"role": "user", "content": "Hello there"}], "tier": "fast", "temperature": 0.5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let spans = traces.of(&trace_id).await;
    let req = request(&spans);
    assert_eq!(text(req, "gen_ai.request.model"), format!("us.{HAIKU}"));
    assert_eq!(
        text(req, "gen_ai.response.model"),
        format!("us.{NOVA_LITE}")
    );
    assert_eq!(req.name, format!("chat us.{HAIKU}"));
    assert_eq!(int(req, "quarry.fallback"), 1);
    assert_eq!(
        attr(req, "gen_ai.request.temperature"),
        Some(Attr::F64(0.5))
    );

    let attempts = children(&spans, req, "chat ");
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let mut attempts = attempts;
    attempts.sort_by_key(|s| int(s, "quarry.attempt"));
    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!(first.name, format!("chat us.{HAIKU}"));
    assert!(matches!(first.status, Status::Error { .. }), "{first:#?}");
    assert_eq!(text(first, "error.type"), "throttled");
    assert_eq!(int(first, "quarry.attempt"), 1);
    assert_eq!(second.name, format!("chat us.{NOVA_LITE}"));
    assert_eq!(second.status, Status::Unset);
    assert_eq!(int(second, "quarry.attempt"), 2);
    assert!(attr(second, "error.type").is_none());
    assert_no_content(&spans, &["Hello there", stack.key("acme")]);
    // Each call named its own span.
    let headers = recorded_headers(&stack, "Converse");
    for a in [first, second] {
        let parent = format!("Parent={}", a.span_context.span_id());
        assert!(headers.iter().any(|h| h.contains(&parent)), "{headers:?}");
    }
}

#[tokio::test]
async fn a_stream_and_a_cache_hit() {
    let traces = traces();
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let message = "Tell me something about lighthouses";

    // Streamed: the attempt's span lasts until the stream ends and carries its usage.
    let (trace, trace_id) = header(3);
    let (status, sse) = chat(
        &s,
        key,
        &trace,
        json!({"messages": [{"role": "user", "content": message}], "tier": "fast", "stream": true}),
    )
    .await;
    assert_eq!(status, 200, "{sse}");
    let streamed: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    assert!(streamed.len() > 10, "{sse}");
    let spans = traces.of(&trace_id).await;
    let req = request(&spans);
    assert_eq!(attr(req, "quarry.stream"), Some(Attr::Bool(true)));
    assert!(int(req, "gen_ai.usage.output_tokens") > 0);
    let attempts = children(&spans, req, "chat ");
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    assert_eq!(
        int(attempts[0], "gen_ai.usage.output_tokens"),
        int(req, "gen_ai.usage.output_tokens")
    );
    assert!(!text(attempts[0], "gen_ai.response.finish_reasons").is_empty());
    assert_no_content(&spans, &[message, &streamed, key]);
    assert!(
        recorded_headers(&stack, "ConverseStream")
            .iter()
            .any(|h| h.starts_with(&format!("Root=1-{}-{}", &trace_id[..8], &trace_id[8..]))),
    );

    // Cached: the second identical request is answered without a model call.
    let ask = json!({"messages": [{"role": "user", "content": message}], "tier": "fast", "temperature": 0});
    let (first, _) = header(4);
    assert_eq!(chat(&s, key, &first, ask.clone()).await.0, 200);
    let (second, second_id) = header(5);
    let (status, body) = chat(&s, key, &second, ask).await;
    assert_eq!(status, 200, "{body}");
    let spans = traces.of(&second_id).await;
    let req = request(&spans);
    assert_eq!(attr(req, "quarry.cache_hit"), Some(Attr::Bool(true)));
    assert!(children(&spans, req, "chat ").is_empty(), "{spans:#?}");
    let answer = serde_json::from_str::<Value>(&body).unwrap()["output"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_no_content(&spans, &[message, &answer, key]);
}

#[tokio::test]
async fn without_an_exporter_requests_run_untraced() {
    // No subscriber with the layer: the spans are disabled, answers are unchanged.
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let (trace, _) = header(6);
    let (status, body) = chat(
        &s,
        stack.key("acme"),
        &trace,
        json!({"messages": [{"role": "user", "content": "hi"}], "tier": "fast"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Without spans nothing names the caller's span to Bedrock: the SDK's own header (from
    // the Lambda's environment) applies, and here there is none.
    let headers = recorded_headers(&stack, "Converse");
    assert!(
        headers
            .iter()
            .all(|h| !h.contains("Parent=53995c3f42cd8ad8")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_bedrock_guardrail_block_is_a_guardrail_span_and_a_failed_request() {
    let traces = traces();
    let stack = Stack::start().await;
    let key = stack::add_tenant(
        &stack,
        "bedrock-guarded",
        json!({"guardrails": {"bedrock": {"id": "quarrydefault", "version": "DRAFT"}}}),
    )
    .await;
    let s = state(&stack, options());
    let message = "my ssn is 123-45-6789";
    let (trace, trace_id) = header(7);
    let (status, body) = chat(
        &s,
        &key,
        &trace,
        json!({"messages": [{"role": "user", "content": message}], "tier": "fast", "stream": true}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let spans = traces.of(&trace_id).await;
    let req = request(&spans);
    assert!(matches!(req.status, Status::Error { .. }), "{req:#?}");
    assert_eq!(text(req, "error.type"), "guardrail_blocked");
    // Quarry's own check, then Bedrock's (ApplyGuardrail), which blocked; no model call.
    let checks = children(&spans, req, "guardrail input");
    assert_eq!(checks.len(), 2, "{spans:#?}");
    assert_eq!(text(checks[0], "quarry.guardrail.checker"), "quarry");
    let bedrock = checks[1];
    assert_eq!(text(bedrock, "quarry.guardrail.checker"), "bedrock");
    assert_eq!(
        attr(bedrock, "quarry.guardrail.blocked"),
        Some(Attr::Bool(true))
    );
    assert!(children(&spans, req, "chat ").is_empty(), "{spans:#?}");
    assert_no_content(&spans, &[message, "123-45-6789", &key]);
    let applied = recorded_headers(&stack, "ApplyGuardrail");
    let parent = format!("Parent={}", bedrock.span_context.span_id());
    assert!(applied.iter().any(|h| h.contains(&parent)), "{applied:?}");
}
