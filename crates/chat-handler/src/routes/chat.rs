//! The flow both chat APIs share: parse the body, then answer whole (through the
//! idempotency record when the request has a key) or stream, and write the request line.
//! A [`ChatApi`] says how one API reads a request and writes an answer.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue};
use quarry_core::Error;
use quarry_core::chat::ChatInput;
use quarry_core::service::{Answer, AnswerRequest, AnswerStream, CacheMode};
use quarry_core::tenancy;
use quarry_http::{ApiError, Caller, JsonBody, RequestMeta};
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::idempotency::{self, Claim};
use crate::observe::RequestLog;
use crate::routes::Shared;
use crate::state::{AppState, Options};
use crate::stream::{self, Dialect};

/// A request as a chat API reads it.
pub struct Parsed {
    pub input: ChatInput,
    pub cache: CacheMode,
    pub stream: bool,
    /// Whether the stream ends with the usage.
    pub include_usage: bool,
    /// OpenAI's legacy function calling: the answer takes its shape.
    pub legacy_functions: bool,
}

/// What distinguishes one chat API from another.
pub trait ChatApi: Dialect + Send + 'static {
    /// `METHOD /path`, for the request line.
    const ROUTE: &'static str;
    /// Its messages may link images by URL (fetched where the deployment allows it).
    const LINKS_IMAGES: bool = false;
    fn parse(body: &[u8], headers: &HeaderMap, options: &Options) -> Result<Parsed, Error>;
    /// An error response, in the API's own shape.
    fn error(e: Error, request_id: &str) -> Response {
        ApiError::new(e, request_id).into_response()
    }
    /// The body of a whole answer (`legacy_functions`: as the request's `Parsed` says).
    fn body<'a>(
        meta: &RequestMeta,
        answer: &'a Answer,
        legacy_functions: bool,
    ) -> impl Serialize + 'a;
}

enum Reply {
    Whole(Response),
    /// The first token has arrived; the rest is the stream's.
    Stream {
        answer: Box<AnswerStream>,
        include_usage: bool,
        legacy_functions: bool,
    },
}

/// The handler of API `A`'s chat route.
pub async fn chat<A: ChatApi>(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let mut log = RequestLog::traced(A::ROUTE, &meta, "chat");
    log.caller(&caller.tenant);
    // Everything the request does runs in its span (a stream's span lives in its log).
    let span = log.span();
    match answer::<A>(&state, &meta, &caller, &headers, &body, &mut log)
        .instrument(span)
        .await
    {
        Ok(Reply::Whole(response)) => {
            log.close(&state, &meta, None);
            response
        }
        Ok(Reply::Stream {
            answer,
            include_usage,
            legacy_functions,
        }) => stream::respond::<A>(state, meta, log, *answer, include_usage, legacy_functions),
        Err(e) => {
            log.close(&state, &meta, Some(&e));
            A::error(e, &meta.request_id)
        }
    }
}

async fn answer<A: ChatApi>(
    state: &AppState,
    meta: &RequestMeta,
    caller: &tenancy::Caller,
    headers: &HeaderMap,
    body: &[u8],
    log: &mut RequestLog,
) -> Result<Reply, Error> {
    // Linked images are fetched first (where the deployment allows it), then checked with
    // the inline ones.
    let fetched = match (&state.images, A::LINKS_IMAGES) {
        (Some(fetcher), true) => {
            quarry_http::openai::content::inline_image_urls(body, fetcher.as_ref()).await?
        }
        _ => None,
    };
    let parsed = A::parse(fetched.as_deref().unwrap_or(body), headers, &state.options)?;
    if state.options.stream_only && !parsed.stream {
        return Err(Error::bad_request(
            "stream",
            "this endpoint serves streamed answers only: send \"stream\": true, or use the HTTP API for whole answers",
        ));
    }
    log.asked(&parsed.input, parsed.stream);
    let legacy_functions = parsed.legacy_functions;
    let request = AnswerRequest {
        id: meta.usage_id.clone(),
        input: parsed.input,
        cache: parsed.cache,
        deadline: meta.deadline,
    };
    if parsed.stream {
        idempotency::refuse_on_stream(headers)?;
        let answer = state.service.answer_stream(caller, request).await?;
        return Ok(Reply::Stream {
            answer: Box::new(answer),
            include_usage: parsed.include_usage,
            legacy_functions,
        });
    }
    let ticket = match idempotency::claim(state, &caller.tenant, headers, body).await? {
        Claim::Replay(response) => {
            log.cached = true;
            return Ok(Reply::Whole(response));
        }
        Claim::Run(ticket) => ticket,
    };
    let outcome = match state.service.answer(caller, request).await {
        Ok(answer) => {
            let body = to_json(&A::body(meta, &answer, legacy_functions));
            body.map(|body| (body, answer))
        }
        Err(e) => Err(e),
    };
    if let Some(ticket) = ticket {
        let settled = outcome.as_ref().map(|(body, _)| body);
        ticket
            .settle(state, &caller.tenant, settled, &meta.request_id)
            .await;
    }
    let (body, answer) = outcome?;
    log.answered(&answer, state.options.log_content);
    let mut response = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&meta.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    Ok(Reply::Whole(response))
}

/// The body as JSON, as the idempotency record keeps it.
fn to_json(body: &impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(body)
        .map_err(|e| Error::Internal(format!("response not serializable: {e}")))
}
