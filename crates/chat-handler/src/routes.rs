//! Route handlers: thin adapters from HTTP to the pipeline.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use quarry_core::Error;
use quarry_http::{ApiError, parse_json};
use serde_json::json;

use crate::native::{self, ChatRequest};
use crate::request::{accept, caller};
use crate::state::AppState;

pub type Shared = Arc<AppState>;

/// `POST /v1/chat`
pub async fn chat(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    let incoming = match accept(&state, request).await {
        Ok(i) => i,
        Err((e, meta)) => return ApiError::new(e, &meta.request_id).into_response(),
    };
    let id = incoming.meta.request_id.clone();
    match chat_inner(&state, incoming).await {
        Ok(r) => r,
        Err(e) => ApiError::new(e, &id).into_response(),
    }
}

async fn chat_inner(
    state: &AppState,
    incoming: crate::request::Incoming,
) -> Result<Response, Error> {
    let request: ChatRequest = parse_json(&incoming.body)?;
    let (input, _cache, stream) = request.into_input(&state.options)?;
    if stream {
        return Err(Error::bad_request(
            "stream",
            "streaming is not available on this route yet",
        ));
    }
    let prepared = state.pipeline.prepare(&incoming.caller, input).await?;
    let outcome = state
        .pipeline
        .complete(&prepared, incoming.meta.deadline)
        .await?;
    let body = native::response(
        &incoming.meta.request_id,
        &prepared,
        &outcome,
        None,
        incoming.meta.elapsed_ms(),
    );
    Ok(axum::Json(body).into_response())
}

/// `GET /v1/models`: the tiers and models this caller may use (OpenAI list shape).
pub async fn models(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    let (parts, _) = request.into_parts();
    let meta = quarry_http::RequestMeta::from_parts(
        &parts,
        state.options.request_timeout,
        state.options.deadline_margin,
    );
    let result = async {
        let caller = caller(&state, &parts).await?;
        let routing = state.pipeline.configs().routing().await?;
        let mut data = Vec::new();
        for (tier, chain) in &routing.tiers {
            if caller.policy.allows_tier(tier) {
                data.push(json!({ "id": tier, "object": "model", "owned_by": "quarry", "type": "tier", "models": chain }));
            }
        }
        for base in routing.models.keys() {
            if caller.policy.allows_model(base, base) {
                data.push(json!({ "id": base, "object": "model", "owned_by": "bedrock", "type": "model" }));
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

/// Unknown routes get the envelope too.
pub async fn not_found(request: http::Request<Body>) -> Response {
    let meta = quarry_http::RequestMeta::from_parts(
        &request.into_parts().0,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    ApiError::new(Error::NotFound("no such route".into()), &meta.request_id).into_response()
}
