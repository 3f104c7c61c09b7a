//! Embedding models (`kind: embedding`): InvokeModel only, with each model's own body
//! ([`titan`], [`cohere`]) checked against its schema ([`schema`]) and answered with
//! deterministic vectors ([`vectors`]).
//!
//! Usage travels in InvokeModel's headers, as for every model: the input tokens of all
//! texts, zero output tokens, and the invocation latency (the model's time to first token
//! plus any `slow_ms` fault). Faults apply as to any model, after the body is checked.

pub mod cohere;
pub mod schema;
pub mod titan;
pub mod vectors;

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::catalog::ResolvedModel;
use crate::config::{EmbeddingBody, ModelKind};
use crate::error::BedrockError;
use crate::request::{ModelOp, parse_json, require_json_content_type};
use crate::state::EmulatorState;

pub fn is_embedding(model: &ResolvedModel) -> bool {
    model.spec.kind == ModelKind::Embedding
}

/// Converse's error for a model it cannot talk to.
pub fn not_chat() -> BedrockError {
    BedrockError::validation(
        "This action doesn't support the model that you provided. Try again with a supported text or chat model.",
    )
}

/// The error an embedding model gives for `op`; none for InvokeModel, the one it serves.
pub fn unsupported(op: ModelOp) -> Option<BedrockError> {
    match op {
        ModelOp::InvokeModel | ModelOp::BatchRecord => None,
        ModelOp::Converse | ModelOp::ConverseStream => Some(not_chat()),
        ModelOp::InvokeModelWithResponseStream => Some(BedrockError::validation(
            "The model is unsupported for streaming.",
        )),
        ModelOp::CountTokens => Some(BedrockError::validation(
            "The provided model doesn't support counting tokens.",
        )),
    }
}

/// A checked embedding request of either body.
enum EmbeddingRequest {
    Titan(titan::TitanRequest),
    Cohere(cohere::CohereRequest),
}

fn parse(model: &ResolvedModel, body: &Value) -> Result<EmbeddingRequest, BedrockError> {
    match model.spec.embedding_body {
        EmbeddingBody::TitanV2 => titan::parse(&model.spec, body).map(EmbeddingRequest::Titan),
        EmbeddingBody::CohereV3 => {
            cohere::parse(&model.spec, body, false).map(EmbeddingRequest::Cohere)
        }
        EmbeddingBody::CohereV4 => {
            cohere::parse(&model.spec, body, true).map(EmbeddingRequest::Cohere)
        }
    }
}

/// Answers one call to an embedding model.
pub async fn serve(
    state: &EmulatorState,
    model: &ResolvedModel,
    op: ModelOp,
    headers: &HeaderMap,
    body: &Bytes,
    request_id: &str,
    region: &str,
) -> Result<Response, BedrockError> {
    if let Some(e) = unsupported(op) {
        return Err(e);
    }
    require_json_content_type(headers, true)?;
    let request = parse(model, &parse_json(body)?)?;
    let faults = state.take_faults(&model.base_id, region);
    if let Some(kind) = faults.fail {
        return Err(BedrockError::of(kind));
    }
    let latency = state.timing(model, faults.extra_delay_ms).ttft;
    let (answer, input_tokens) = match &request {
        EmbeddingRequest::Titan(r) => titan::respond(&model.base_id, r),
        EmbeddingRequest::Cohere(r) => cohere::respond(&model.base_id, r, request_id),
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(response(answer, input_tokens, latency))
}

/// The body, and usage and latency in InvokeModel's headers; an embedding has no output
/// tokens.
fn response(body: Value, input_tokens: u32, latency: Duration) -> Response {
    let mut response = axum::Json(body).into_response();
    let h = response.headers_mut();
    h.insert(
        "x-amzn-bedrock-input-token-count",
        HeaderValue::from(input_tokens),
    );
    h.insert("x-amzn-bedrock-output-token-count", HeaderValue::from(0u32));
    h.insert(
        "x-amzn-bedrock-invocation-latency",
        HeaderValue::from(latency.as_millis() as u64),
    );
    response
}
