//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API (its
//! wire types are `quarry_http::anthropic`), for Claude Code and the `anthropic` SDKs. Errors,
//! those of the extractors included, have Anthropic's shape.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use quarry_core::Error;
use quarry_core::service::{Answer, CacheMode, StreamItem};
use quarry_http::anthropic::events::{self, Encoder};
use quarry_http::anthropic::{Message, MessagesRequest, bedrock_betas, error_body};
use quarry_http::native::FallbackOut;
use quarry_http::{Caller, JsonBody, RequestMeta, parse_json};
use serde::Serialize;
use serde_json::json;

use crate::routes::Shared;
use crate::routes::chat::{ChatApi, Parsed};
use crate::state::Options;
use crate::stream::{Dialect, Frame, Head, Progress};

/// The API of `POST /v1/messages`; its handler is `chat::<Anthropic>`.
pub struct Anthropic;

/// An error in Anthropic's shape, with the status and headers Quarry gives it.
pub fn error_response(e: Error, request_id: &str) -> Response {
    let mut response = quarry_http::ApiError::new(e.clone(), request_id).into_response();
    let body = error_body(&e, request_id).to_string();
    *response.body_mut() = axum::body::Body::from(body);
    response
}

impl ChatApi for Anthropic {
    const ROUTE: &'static str = "POST /v1/messages";

    fn parse(body: &[u8], headers: &HeaderMap, options: &Options) -> Result<Parsed, Error> {
        let request: MessagesRequest = parse_json(body)?;
        let betas = bedrock_betas(headers.get("anthropic-beta").and_then(|v| v.to_str().ok()));
        let p = request.into_input(&options.limits(), betas)?;
        Ok(Parsed {
            input: p.input,
            cache: CacheMode::Auto,
            stream: p.stream,
            include_usage: true,
            legacy_functions: false,
        })
    }

    fn body<'a>(meta: &RequestMeta, answer: &'a Answer, _: bool) -> impl Serialize + 'a {
        Message::new(&meta.request_id, &answer.model, answer)
    }

    fn error(e: Error, request_id: &str) -> Response {
        error_response(e, request_id)
    }
}

fn frames(events: Vec<events::Event>) -> Vec<Frame> {
    events
        .into_iter()
        .map(|(name, data)| Frame::json(Some(name), &data))
        .collect()
}

impl Dialect for Anthropic {
    type State = Encoder;

    fn opening(head: &Head) -> Vec<Frame> {
        frames(events::opening(
            &quarry_http::anthropic::response::message_id(&head.request_id),
            &head.model,
        ))
    }

    fn frames(head: &Head, state: &mut Encoder, item: &StreamItem, _: Progress<'_>) -> Vec<Frame> {
        frames(match item {
            StreamItem::Text(t) => state.text(t),
            StreamItem::Reasoning(t) => state.reasoning(t),
            StreamItem::ReasoningSigned(s) => state.signed(s),
            StreamItem::ToolStart { index, id, name } => state.tool_start(*index, id, name),
            StreamItem::ToolDelta { index, json } => state.tool_arguments(*index, json),
            StreamItem::Done(summary) => state.done(
                summary,
                json!({
                    "model": head.model,
                    "cost_usd": summary.cost.map(|c| c.to_usd_string()),
                    "cached": head.cached,
                    "fallbacks": head.fallbacks.iter().collect::<Vec<&FallbackOut>>(),
                }),
            ),
            StreamItem::Error(e) => vec![("error", error_body(e, &head.request_id))],
        })
    }
}

/// `POST /v1/messages/count_tokens`: the input tokens of a Messages request, estimated
/// after the routing and the tenant's policy; no model is called and nothing is charged.
pub async fn count_tokens(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Response {
    let counted = async {
        let request: MessagesRequest = parse_json(&body)?;
        let input = request.into_count_input(&state.options.limits())?;
        state.service.count_tokens(&caller, input).await
    }
    .await;
    match counted {
        Ok(tokens) => axum::Json(json!({"input_tokens": tokens})).into_response(),
        Err(e) => error_response(e, &meta.request_id),
    }
}

/// Reshapes the errors the extractors answer (credentials, body) into Anthropic's shape on
/// the Messages routes, so the SDKs read them as they read the handler's.
pub async fn reshape_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let Some(refused) = response.extensions().get::<quarry_http::Refused>().cloned() else {
        return response;
    };
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (mut parts, _) = response.into_parts();
    let body = error_body(&refused.0, &request_id).to_string();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
