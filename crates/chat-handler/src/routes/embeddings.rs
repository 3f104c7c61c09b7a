//! `POST /v1/embeddings` (OpenAI's) and `POST /v1/embed` (native): texts to vectors, cached
//! per tenant and charged as chat is.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use quarry_http::embeddings::{EmbedRequest, OaEmbeddingRequest, native_response, openai_response};
use quarry_http::{ApiError, Caller, JsonBody, RequestMeta, parse_json};

use tracing::Instrument;

use crate::observe::RequestLog;
use crate::routes::Shared;

/// `POST /v1/embeddings`.
pub async fn openai(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Response {
    let mut log = RequestLog::traced("POST /v1/embeddings", &meta, "embeddings");
    log.caller(&caller.tenant);
    let span = log.span();
    let result = async {
        let (input, encoding) = parse_json::<OaEmbeddingRequest>(&body)?.into_input()?;
        let out = state
            .embeddings
            .embed(&caller, &meta.usage_id, input, meta.deadline)
            .await?;
        log.embedded(&out);
        Ok::<_, quarry_core::Error>(openai_response(&out, encoding))
    }
    .instrument(span)
    .await;
    finish(&state, &meta, log, result)
}

/// `POST /v1/embed`.
pub async fn native(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Response {
    let mut log = RequestLog::traced("POST /v1/embed", &meta, "embeddings");
    log.caller(&caller.tenant);
    let span = log.span();
    let result = async {
        let input = parse_json::<EmbedRequest>(&body)?.into_input()?;
        let out = state
            .embeddings
            .embed(&caller, &meta.usage_id, input, meta.deadline)
            .await?;
        log.embedded(&out);
        Ok::<_, quarry_core::Error>(native_response(&meta.request_id, &out))
    }
    .instrument(span)
    .await;
    finish(&state, &meta, log, result)
}

fn finish(
    state: &Shared,
    meta: &RequestMeta,
    log: RequestLog,
    result: Result<serde_json::Value, quarry_core::Error>,
) -> Response {
    match result {
        Ok(body) => {
            log.close(state, meta, None);
            Json(body).into_response()
        }
        Err(e) => {
            log.close(state, meta, Some(&e));
            ApiError::new(e, &meta.request_id).into_response()
        }
    }
}
