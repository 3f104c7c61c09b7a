//! The Agents for Amazon Bedrock Runtime operations over HTTP: body parsing, faults (by
//! knowledge base ID) and the JSON answer.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::generate;
use crate::catalog::resolve;
use crate::error::BedrockError;
use crate::request::parse_json;
use crate::state::EmulatorState;

/// Faults are looked up by knowledge base ID, as they are by model ID for models.
fn faults(state: &EmulatorState, id: &str, region: &str) -> Result<(), BedrockError> {
    match state.take_faults(id, region).fail {
        Some(kind) => Err(BedrockError::of(kind)),
        None => Ok(()),
    }
}

pub fn retrieve(
    state: &EmulatorState,
    id: &str,
    region: &str,
    body: &Bytes,
) -> Result<Response, BedrockError> {
    let chunks = state.knowledge_base(id)?;
    let body = parse_json(body)?;
    let answer = super::retrieve::respond(&chunks, &body)?;
    faults(state, id, region)?;
    Ok(axum::Json(answer).into_response())
}

/// The knowledge base a RetrieveAndGenerate body names, for counters and recordings
/// (`-` when it names none).
pub fn knowledge_base_named(body: &Bytes) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer(
                "/retrieveAndGenerateConfiguration/knowledgeBaseConfiguration/knowledgeBaseId",
            )
            .and_then(Value::as_str)
            .map(str::to_owned)
        })
        .unwrap_or_else(|| "-".to_owned())
}

pub fn retrieve_and_generate(
    state: &EmulatorState,
    region: &str,
    body: &Bytes,
    request_id: &str,
) -> Result<Response, BedrockError> {
    let body = parse_json(body)?;
    let target = generate::target(&body)?;
    // An application inference profile made through the control plane stands for its model.
    let model = crate::profiles::base_of(state, &target.model_arn);
    resolve(
        &state.config(),
        model.as_deref().unwrap_or(&target.model_arn),
    )?;
    let chunks = state.knowledge_base(&target.knowledge_base_id)?;
    let answer = generate::respond(&chunks, &body, request_id)?;
    faults(state, &target.knowledge_base_id, region)?;
    Ok(axum::Json(answer).into_response())
}
