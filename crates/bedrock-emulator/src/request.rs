//! A model operation's request read into a prompt: the body (Converse, an InvokeModel
//! body, or a CountTokens input) checked and normalised for the model that answers it,
//! which a prompt router picks per request.

use axum::body::Bytes;
use base64::Engine;
use http::{HeaderMap, header};
use serde_json::Value;

use crate::catalog::ResolvedModel;
use crate::converse::{ConverseBody, Prompt};
use crate::embedding;
use crate::error::{BedrockError, ErrorKind};
use crate::invoke;
use crate::router::Router;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelOp {
    Converse,
    ConverseStream,
    InvokeModel,
    InvokeModelWithResponseStream,
    CountTokens,
    /// A batch inference job's record: InvokeModel, answered without the simulated model
    /// latency (a job's pace is its phases', `batch.step_ms`).
    BatchRecord,
}

impl ModelOp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Converse => "Converse",
            Self::ConverseStream => "ConverseStream",
            Self::InvokeModel | Self::BatchRecord => "InvokeModel",
            Self::InvokeModelWithResponseStream => "InvokeModelWithResponseStream",
            Self::CountTokens => "CountTokens",
        }
    }
}

pub fn parse_json(body: &Bytes) -> Result<Value, BedrockError> {
    if body.is_empty() {
        return Err(BedrockError::validation(
            "Malformed input request: the request body is empty, please reformat your input and try again.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        BedrockError::validation(format!(
            "Malformed input request: {e}, please reformat your input and try again."
        ))
    })
}

/// Converse takes JSON; InvokeModel's body is a blob, which the SDKs send as
/// `application/octet-stream` unless the caller names a content type.
pub fn require_json_content_type(headers: &HeaderMap, blob_body: bool) -> Result<(), BedrockError> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        Some(ct) if blob_body && ct.starts_with("application/octet-stream") => Ok(()),
        Some(ct) => Err(BedrockError::validation(format!(
            "The content type {ct} is not supported. Send application/json."
        ))),
    }
}

/// What a model ID names: a model, or a prompt router that picks one per request.
pub enum Target {
    Model(ResolvedModel),
    Router(Router),
}

/// The model that answers a request, its prompt, and the router's report when a router
/// chose it.
pub struct Routed {
    pub model: ResolvedModel,
    pub prompt: Prompt,
    pub invoked_model_arn: Option<String>,
}

pub fn routed_prompt(
    target: &Target,
    op: ModelOp,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Routed, BedrockError> {
    match target {
        Target::Model(model) => Ok(Routed {
            prompt: prompt_for(model, op, headers, body)?,
            model: model.clone(),
            invoked_model_arn: None,
        }),
        Target::Router(router) => {
            // Each of the router's models reads the request; the router picks by the
            // prompt's length among those that accept it (an image goes past a text-only
            // model), and fails as its first model does when none accepts it.
            let mut first_error = None;
            let mut accepted = Vec::new();
            for (i, model) in router.models.iter().enumerate() {
                match prompt_for(model, op, headers, body) {
                    Ok(prompt) => accepted.push((i, model, prompt)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            let Some(tokens) = accepted.first().map(|(_, _, p)| p.input_tokens) else {
                return Err(first_error
                    .unwrap_or_else(|| BedrockError::of(ErrorKind::ResourceNotFoundException)));
            };
            let wanted = router.pick(tokens);
            let position = accepted
                .iter()
                .position(|(i, _, _)| *i == wanted)
                .unwrap_or(accepted.len() - 1);
            let (_, model, prompt) = accepted.swap_remove(position);
            Ok(Routed {
                invoked_model_arn: Some(router.invoked_model_arn(&model.base_id)),
                model: model.clone(),
                prompt,
            })
        }
    }
}

/// Parses the request of `op` into a prompt.
fn prompt_for(
    model: &ResolvedModel,
    op: ModelOp,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Prompt, BedrockError> {
    // Embedding models are served apart; one reaching here sits behind a prompt router,
    // which only chat models answer.
    if embedding::is_embedding(model) {
        return Err(embedding::unsupported(op).unwrap_or_else(embedding::not_chat));
    }
    let blob_body = matches!(
        op,
        ModelOp::InvokeModel | ModelOp::InvokeModelWithResponseStream | ModelOp::BatchRecord
    );
    require_json_content_type(headers, blob_body)?;
    let value = parse_json(body)?;
    let converse = match op {
        ModelOp::Converse | ModelOp::ConverseStream => value,
        ModelOp::CountTokens => count_tokens_body(model, &value)?,
        ModelOp::InvokeModel | ModelOp::InvokeModelWithResponseStream | ModelOp::BatchRecord => {
            invoke::Family::of(model).to_converse(&value)?
        }
    };
    if op == ModelOp::CountTokens {
        return ConverseBody::parse(converse)?.into_prompt(model, Vec::new());
    }
    // serde_json maps are ordered, so this is a canonical form: the same request in another
    // key order or spacing gets the same answer.
    let fingerprint = serde_json::to_vec(&converse).unwrap_or_default();
    ConverseBody::parse(converse)?.into_prompt(model, fingerprint)
}

/// The Converse body a CountTokens request counts.
fn count_tokens_body(model: &ResolvedModel, value: &Value) -> Result<Value, BedrockError> {
    let input = value
        .get("input")
        .ok_or_else(|| BedrockError::validation("Malformed input request: #: required key [input] not found, please reformat your input and try again."))?;
    if let Some(c) = input.get("converse") {
        Ok(c.clone())
    } else if let Some(b) = input
        .get("invokeModel")
        .and_then(|i| i.get("body"))
        .and_then(Value::as_str)
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| {
                BedrockError::validation(format!("input.invokeModel.body is not base64: {e}"))
            })?;
        let inner: Value = serde_json::from_slice(&raw).map_err(|e| {
            BedrockError::validation(format!("input.invokeModel.body is not JSON: {e}"))
        })?;
        invoke::Family::of(model).to_converse(&inner)
    } else {
        Err(BedrockError::validation(
            "input must have a converse or invokeModel member.",
        ))
    }
}
