//! Route handlers: thin adapters from HTTP to the chat service. Both chat APIs share one
//! flow ([`chat`]), differing only in how they read a request and write an answer
//! ([`ChatApi`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use quarry_core::Error;
use quarry_core::cache::Claim;
use quarry_core::chat::ChatInput;
use quarry_core::service::{
    Answer, AnswerRequest, AnswerStream, CacheMode, StreamItem, StreamSummary,
};
use quarry_http::{ApiError, Incoming, RequestMeta, accept, caller, parse_json};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::observe::RequestLog;
use crate::openai::{self, CompletionRequest};
use crate::state::{AppState, Options};
use quarry_http::native::{self, ChatRequest};

pub type Shared = Arc<AppState>;

/// A request as a chat API reads it.
pub struct Parsed {
    pub input: ChatInput,
    pub cache: CacheMode,
    pub stream: bool,
    pub include_usage: bool,
}

/// What distinguishes the native API from the OpenAI-compatible one.
pub trait ChatApi: Send + Sync + 'static {
    const ROUTE: &'static str;
    fn parse(body: &Bytes, options: &Options) -> Result<Parsed, Error>;
    fn body(meta: &RequestMeta, answer: &Answer) -> Value;
    /// Frames of a streamed answer.
    fn stream_frames(state: &mut StreamFrames, item: &StreamItem) -> Vec<String>;
    /// Frames sent with the first token, before any content.
    fn opening(state: &mut StreamFrames) -> Vec<String>;
}

/// Per-stream state of the frame writer.
pub struct StreamFrames {
    pub request_id: String,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
    pub stream: AnswerStreamInfo,
    pub text: String,
    pub started_ms: u64,
}

/// What is known about a stream when its first token arrives.
#[derive(Clone)]
pub struct AnswerStreamInfo {
    pub fallbacks: Value,
    pub cached: bool,
    pub prompt: Value,
    pub degraded_to: Option<String>,
}

pub struct Native;
pub struct OpenAi;

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(e) => format!("event: {e}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

impl ChatApi for Native {
    const ROUTE: &'static str = "POST /v1/chat";

    fn parse(body: &Bytes, options: &Options) -> Result<Parsed, Error> {
        let request: ChatRequest = parse_json(body)?;
        let (input, cache, stream) = request.into_input(&options.limits())?;
        Ok(Parsed {
            input,
            cache,
            stream,
            include_usage: true,
        })
    }

    fn body(meta: &RequestMeta, answer: &Answer) -> Value {
        serde_json::to_value(native::response(
            &meta.request_id,
            answer,
            meta.elapsed_ms(),
        ))
        .unwrap_or(Value::Null)
    }

    fn opening(s: &mut StreamFrames) -> Vec<String> {
        vec![sse(
            Some("start"),
            &json!({
                "id": s.request_id, "model": s.model, "fallbacks": s.stream.fallbacks,
                "cached": s.stream.cached, "prompt": s.stream.prompt, "degraded_to": s.stream.degraded_to,
            }),
        )]
    }

    fn stream_frames(s: &mut StreamFrames, item: &StreamItem) -> Vec<String> {
        match item {
            StreamItem::Text(t) => vec![sse(Some("delta"), &json!({ "text": t }))],
            StreamItem::ToolStart { .. } | StreamItem::ToolDelta { .. } => Vec::new(),
            StreamItem::Done(summary) => vec![sse(Some("done"), &native_done(s, summary))],
            StreamItem::Error(e) => vec![sse(
                Some("error"),
                &ApiError::new(e.clone(), &s.request_id).body(),
            )],
        }
    }
}

fn native_done(s: &StreamFrames, summary: &StreamSummary) -> Value {
    json!({
        "id": s.request_id,
        "output": { "text": s.text, "json": summary.json },
        "model": s.model,
        "stop_reason": summary.stop_reason.as_str(),
        "fallbacks": s.stream.fallbacks,
        "usage": native::Usage::from(summary.usage),
        "cost_usd": summary.cost.map(|c| c.to_usd_string()),
        "cost_status": summary.cost.is_none().then_some("unpriced"),
        "cached": s.stream.cached,
        "prompt": s.stream.prompt,
        "latency_ms": { "model": summary.model_latency_ms, "total": s.started_ms },
        "guardrails": (!summary.guardrails.is_empty()).then(|| summary.guardrails.clone()),
        "degraded_to": s.stream.degraded_to,
    })
}

impl ChatApi for OpenAi {
    const ROUTE: &'static str = "POST /v1/chat/completions";

    fn parse(body: &Bytes, options: &Options) -> Result<Parsed, Error> {
        let request: CompletionRequest = parse_json(body)?;
        let p = request.into_input(options)?;
        Ok(Parsed {
            input: p.input,
            cache: CacheMode::Auto,
            stream: p.stream,
            include_usage: p.include_usage,
        })
    }

    fn body(meta: &RequestMeta, answer: &Answer) -> Value {
        openai::response(&meta.request_id, answer)
    }

    fn opening(s: &mut StreamFrames) -> Vec<String> {
        vec![sse(
            None,
            &openai::chunk(
                &s.id,
                s.created,
                &s.model,
                json!({"role": "assistant", "content": ""}),
                None,
            ),
        )]
    }

    fn stream_frames(s: &mut StreamFrames, item: &StreamItem) -> Vec<String> {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse(
                None,
                &openai::chunk(&s.id, s.created, &s.model, delta, finish),
            )
        };
        match item {
            StreamItem::Text(t) => vec![chunk(json!({ "content": t }), None)],
            StreamItem::ToolStart { index, id, name } => vec![chunk(
                json!({ "tool_calls": [{ "index": index, "id": id, "type": "function", "function": { "name": name, "arguments": "" } }] }),
                None,
            )],
            StreamItem::ToolDelta { index, json } => {
                vec![chunk(
                    json!({ "tool_calls": [{ "index": index, "function": { "arguments": json } }] }),
                    None,
                )]
            }
            StreamItem::Done(summary) => {
                let mut frames = vec![chunk(
                    json!({}),
                    Some(openai::finish_reason(&summary.stop_reason)),
                )];
                if s.include_usage {
                    let mut last = openai::chunk(&s.id, s.created, &s.model, json!({}), None);
                    last["choices"] = json!([]);
                    last["usage"] = openai::usage(&summary.usage);
                    frames.push(sse(None, &last));
                }
                frames.push("data: [DONE]\n\n".to_owned());
                frames
            }
            StreamItem::Error(e) => vec![
                sse(None, &ApiError::new(e.clone(), &s.request_id).body()),
                "data: [DONE]\n\n".to_owned(),
            ],
        }
    }
}

/// `POST /v1/chat`
pub async fn native(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    chat::<Native>(state, request).await
}

/// `POST /v1/chat/completions`
pub async fn completions(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    chat::<OpenAi>(state, request).await
}

fn flush(state: &AppState) {
    if let Some(f) = &state.flush_metrics {
        f();
    }
}

fn error_response(state: &AppState, log: RequestLog, meta: &RequestMeta, error: Error) -> Response {
    log.finish(meta, Some(&error));
    flush(state);
    ApiError::new(error, &meta.request_id).into_response()
}

async fn chat<A: ChatApi>(state: Shared, request: http::Request<Body>) -> Response {
    let incoming = match accept(request, &state.options.accept(), state.service.configs()).await {
        Ok(i) => i,
        Err((e, meta)) => {
            return error_response(&state, RequestLog::new(A::ROUTE, &meta), &meta, e);
        }
    };
    let Incoming {
        meta,
        caller,
        parts,
        body,
    } = incoming;
    let mut log = RequestLog::new(A::ROUTE, &meta);
    log.tenant = Some(caller.tenant.clone());
    let parsed = match A::parse(&body, &state.options) {
        Ok(p) => p,
        Err(e) => return error_response(&state, log, &meta, e),
    };
    log.feature = parsed.input.tags.get("feature").cloned();
    log.stream = parsed.stream;
    let answer_request = AnswerRequest {
        id: meta.request_id.clone(),
        input: parsed.input,
        cache: parsed.cache,
        deadline: meta.deadline,
    };

    if parsed.stream {
        if parts.headers.contains_key("idempotency-key") {
            let e = Error::bad_request(
                "Idempotency-Key",
                "Idempotency-Key applies to non-streaming requests; retry a stream without it",
            );
            return error_response(&state, log, &meta, e);
        }
        return match state.service.answer_stream(&caller, answer_request).await {
            Ok(s) => stream_response::<A>(state, meta, log, s, parsed.include_usage),
            Err(e) => error_response(&state, log, &meta, e),
        };
    }

    // Idempotency: a retried request with the same key and body gets the first response.
    let idempotency_key = parts
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &idempotency_key {
        if key.is_empty() || key.len() > 255 {
            return error_response(
                &state,
                log,
                &meta,
                Error::bad_request(
                    "Idempotency-Key",
                    "Idempotency-Key must be 1 to 255 characters",
                ),
            );
        }
        let body_hash = hex::encode(Sha256::digest(&body));
        match state
            .idempotency
            .claim(
                &caller.tenant,
                key,
                &body_hash,
                state.options.idempotency_window,
            )
            .await
        {
            Ok(Claim::Fresh) => {}
            Ok(Claim::Replay { status, body }) => {
                log.cached = true;
                log.finish(&meta, None);
                flush(&state);
                let mut response = (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    axum::Json(body),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return response;
            }
            Ok(Claim::InProgress) => {
                return error_response(
                    &state,
                    log,
                    &meta,
                    Error::InProgress(
                        "a request with this Idempotency-Key is still running; retry shortly"
                            .into(),
                    ),
                );
            }
            Ok(Claim::Mismatch) => {
                return error_response(
                    &state,
                    log,
                    &meta,
                    Error::IdempotencyMismatch(
                        "this Idempotency-Key was used with a different request body".into(),
                    ),
                );
            }
            Err(e) => {
                // Without the record a retry could be charged twice: refuse rather than guess.
                tracing::error!(error = %e, "idempotency store unavailable");
                return error_response(
                    &state,
                    log,
                    &meta,
                    Error::Config(quarry_core::params::ParamError::Unavailable(
                        "idempotency store unavailable".into(),
                    )),
                );
            }
        }
    }

    let result = state.service.answer(&caller, answer_request).await;
    match result {
        Ok(answer) => {
            let body = A::body(&meta, &answer);
            if let Some(key) = &idempotency_key
                && let Err(e) = state
                    .idempotency
                    .complete(
                        &caller.tenant,
                        key,
                        200,
                        &body,
                        state.options.idempotency_window,
                    )
                    .await
            {
                tracing::error!(error = %e, "idempotency record not completed; a retry may run again");
            }
            log.model = Some(answer.base_model.clone());
            log.prompt = answer
                .prompt
                .as_ref()
                .map(|p| format!("{}@{}", p.name, p.version));
            log.fallbacks = answer.fallbacks.len();
            log.usage = answer.usage;
            log.cost = answer.cost;
            log.cached = answer.cached;
            log.guardrail_actions = answer.guardrails.actions();
            log.output(&answer.text(), state.options.log_content);
            log.prompt_trace = Some(answer.prompt_trace.clone());
            log.finish(&meta, None);
            flush(&state);
            let mut response = axum::Json(body).into_response();
            if let Ok(v) = HeaderValue::from_str(&meta.request_id) {
                response.headers_mut().insert("x-request-id", v);
            }
            response
        }
        Err(e) => {
            if let Some(key) = &idempotency_key {
                // A transient failure frees the key for a retry; a definitive one is the answer.
                let stored = if e.is_retryable() {
                    state.idempotency.abandon(&caller.tenant, key).await
                } else {
                    let body = ApiError::new(e.clone(), &meta.request_id).body();
                    state
                        .idempotency
                        .complete(
                            &caller.tenant,
                            key,
                            e.status_code(),
                            &body,
                            state.options.idempotency_window,
                        )
                        .await
                };
                if let Err(err) = stored {
                    tracing::error!(error = %err, "idempotency record not updated");
                }
            }
            error_response(&state, log, &meta, e)
        }
    }
}

/// Server-Sent Events: the first frame leaves with the first token; usage comes last.
fn stream_response<A: ChatApi>(
    state: Shared,
    meta: RequestMeta,
    mut log: RequestLog,
    s: AnswerStream,
    include_usage: bool,
) -> Response {
    log.model = Some(s.model.clone());
    log.prompt = s
        .prompt
        .as_ref()
        .map(|p| format!("{}@{}", p.name, p.version));
    log.fallbacks = s.fallbacks.len();
    log.cached = s.cached;
    log.ttft_ms = Some(s.ttft_ms);
    log.prompt_trace = Some(s.prompt_trace.clone());
    let mut frames = StreamFrames {
        request_id: meta.request_id.clone(),
        id: openai::completion_id(&meta.request_id),
        created: openai::now_secs(),
        model: s.model.clone(),
        include_usage,
        stream: AnswerStreamInfo {
            fallbacks: serde_json::to_value(&s.fallbacks).unwrap_or(Value::Null),
            cached: s.cached,
            prompt: serde_json::to_value(&s.prompt).unwrap_or(Value::Null),
            degraded_to: s.degraded_to.clone(),
        },
        text: String::new(),
        started_ms: 0,
    };
    let opening = A::opening(&mut frames).concat();
    let keep = state.options.log_content;
    let request_id = meta.request_id.clone();
    struct Run<A> {
        state: Shared,
        meta: RequestMeta,
        log: Option<RequestLog>,
        frames: StreamFrames,
        events: futures::stream::BoxStream<'static, StreamItem>,
        keep: bool,
        done: bool,
        _api: std::marker::PhantomData<A>,
    }
    let run = Run::<A> {
        state,
        meta,
        log: Some(log),
        frames,
        events: s.events,
        keep,
        done: false,
        _api: std::marker::PhantomData,
    };
    let body = futures::stream::once(async move {
        Ok::<Bytes, std::convert::Infallible>(Bytes::from(opening))
    })
    .chain(futures::stream::unfold(run, |mut run| async move {
        if run.done {
            return None;
        }
        let item = match run.events.next().await {
            Some(item) => item,
            None => {
                // The producer ended without a summary: the client left or the task died.
                run.done = true;
                if let Some(log) = run.log.take() {
                    let e = Error::Internal("the stream ended early".into());
                    log.finish(&run.meta, Some(&e));
                    flush(&run.state);
                    let frames = A::stream_frames(&mut run.frames, &StreamItem::Error(e));
                    return Some((Ok(Bytes::from(frames.concat())), run));
                }
                return None;
            }
        };
        match &item {
            StreamItem::Text(t) => run.frames.text.push_str(t),
            StreamItem::Done(summary) => {
                run.done = true;
                run.frames.started_ms = run.meta.elapsed_ms();
                if let Some(mut log) = run.log.take() {
                    log.usage = summary.usage;
                    log.cost = summary.cost;
                    log.guardrail_actions = summary.guardrails.actions();
                    log.output(&run.frames.text, run.keep);
                    log.finish(&run.meta, None);
                    flush(&run.state);
                }
            }
            StreamItem::Error(e) => {
                run.done = true;
                if let Some(mut log) = run.log.take() {
                    log.output(&run.frames.text, run.keep);
                    log.finish(&run.meta, Some(e));
                    flush(&run.state);
                }
            }
            _ => {}
        }
        let frames = A::stream_frames(&mut run.frames, &item);
        Some((Ok(Bytes::from(frames.concat())), run))
    }));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    response
}

/// `GET /v1/models`: the tiers and models this caller may use (OpenAI list shape).
pub async fn models(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    let (parts, _) = request.into_parts();
    let meta = RequestMeta::from_parts(
        &parts,
        state.options.request_timeout,
        state.options.deadline_margin,
    );
    let result = async {
        let caller = caller(&parts, &state.options.auth, state.service.configs()).await?;
        let routing = state.service.configs().routing().await?;
        let mut data = Vec::new();
        for (tier, chain) in &routing.tiers {
            if caller.policy.allows_tier(tier) {
                data.push(json!({ "id": tier, "object": "model", "created": 0, "owned_by": "quarry", "type": "tier", "models": chain }));
            }
        }
        for base in routing.models.keys() {
            if caller.policy.allows_model(base, base) {
                data.push(json!({ "id": base, "object": "model", "created": 0, "owned_by": "bedrock", "type": "model" }));
            }
        }
        Ok::<_, Error>(json!({ "object": "list", "data": data }))
    }
    .await;
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => ApiError::new(e, &meta.request_id).into_response(),
    }
}

/// `GET /v1/batches/{job_id}`: a batch job of the caller's tenant.
pub async fn batch_status(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    let (parts, _) = request.into_parts();
    let meta = RequestMeta::from_parts(
        &parts,
        state.options.request_timeout,
        state.options.deadline_margin,
    );
    let result = async {
        let caller = caller(&parts, &state.options.auth, state.service.configs()).await?;
        let job_id = parts.uri.path().trim_start_matches("/v1/batches/");
        let unavailable = |e: quarry_core::jobs::JobError| {
            Error::Config(quarry_core::params::ParamError::Unavailable(e.to_string()))
        };
        // The job is looked up under the caller's tenant: another tenant's job is not found.
        let counts = state
            .jobs
            .counts(&caller.tenant, job_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no batch job '{job_id}' for tenant '{}'",
                    caller.tenant
                ))
            })?;
        let items = state
            .jobs
            .items(&caller.tenant, job_id)
            .await
            .map_err(unavailable)?;
        let failures: Vec<Value> = items
            .iter()
            .filter(|i| i.status == quarry_core::jobs::ItemStatus::Failed)
            .map(|i| json!({ "item_id": i.item_id, "reason": i.reason }))
            .collect();
        Ok::<_, Error>(json!({
            "job_id": job_id,
            "counts": {
                "submitted": counts.submitted,
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "in_flight": counts.in_flight(),
            },
            "expected": counts.expected,
            "cost_usd": counts.cost.to_usd_string(),
            "failures": failures,
        }))
    }
    .await;
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => ApiError::new(e, &meta.request_id).into_response(),
    }
}

/// Unknown routes get the envelope too.
pub async fn not_found(request: http::Request<Body>) -> Response {
    let meta = RequestMeta::from_parts(
        &request.into_parts().0,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    ApiError::new(Error::NotFound("no such route".into()), &meta.request_id).into_response()
}
