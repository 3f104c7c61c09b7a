//! `POST /v1/feedback`: `{"request_id", "score", "scale"?, "label"?, "comment"?}`, a rating
//! of one of the caller's own requests (see `quarry_core::feedback`). Answers `201` with
//! what was stored; another tenant's request, or an unknown one, is a 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use quarry_core::feedback::{FeedbackInput, rate};
use quarry_http::{ApiError, Caller, JsonBody, RequestMeta, parse_json};
use serde_json::{Value, json};

use crate::routes::Shared;

pub async fn handler(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let refuse = |e: quarry_core::Error| ApiError::new(e, &meta.request_id);
    let input = parse_json::<FeedbackInput>(&body).map_err(refuse)?;
    let stored = rate(state.feedback.as_ref(), &caller, input)
        .await
        .map_err(refuse)?;
    tracing::info!(tenant = %caller.tenant, request_id = %meta.request_id, rated = %stored.request_id, prompt = %stored.prompt, version = stored.version, model = %stored.model, normalized = stored.normalized, "feedback");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "request_id": stored.request_id,
            "score": stored.score,
            "scale": stored.scale,
            "normalized": stored.normalized,
            "prompt": (stored.prompt != "-").then_some(json!({"name": stored.prompt, "version": stored.version})),
            "model": stored.model,
        })),
    ))
}
