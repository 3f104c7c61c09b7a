//! The Bedrock Runtime HTTP surface: request routing, the five model operations and
//! ApplyGuardrail.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::catalog::{ResolvedModel, resolve};
use crate::converse::{ConverseBody, Prompt};
use crate::error::{BedrockError, ErrorKind};
use crate::eventstream::{self, Step};
use crate::guardrail;
use crate::invoke;
use crate::output::{Output, StopReason, generate};
use crate::render::{self, MidStreamFault, Usage};
use crate::state::EmulatorState;

pub type SharedState = Arc<EmulatorState>;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .nest("/_emulator", crate::admin::router())
        .fallback(bedrock)
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelOp {
    Converse,
    ConverseStream,
    InvokeModel,
    InvokeModelWithResponseStream,
    CountTokens,
}

impl ModelOp {
    fn name(self) -> &'static str {
        match self {
            Self::Converse => "Converse",
            Self::ConverseStream => "ConverseStream",
            Self::InvokeModel => "InvokeModel",
            Self::InvokeModelWithResponseStream => "InvokeModelWithResponseStream",
            Self::CountTokens => "CountTokens",
        }
    }
}

enum Route {
    Model { id: String, op: ModelOp },
    Guardrail { id: String, version: String },
}

fn decode(segment: &str) -> Result<String, BedrockError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| BedrockError::validation("The provided model identifier is invalid."))
}

fn route(uri: &Uri) -> Result<Route, BedrockError> {
    let unknown = || {
        BedrockError::new(
            ErrorKind::UnknownOperationException,
            format!("No Bedrock Runtime operation matches {}", uri.path()),
        )
    };
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["model", id, op] => {
            let op = match *op {
                "converse" => ModelOp::Converse,
                "converse-stream" => ModelOp::ConverseStream,
                "invoke" => ModelOp::InvokeModel,
                "invoke-with-response-stream" => ModelOp::InvokeModelWithResponseStream,
                "count-tokens" => ModelOp::CountTokens,
                _ => return Err(unknown()),
            };
            Ok(Route::Model {
                id: decode(id)?,
                op,
            })
        }
        ["guardrail", id, "version", version, "apply"] => Ok(Route::Guardrail {
            id: decode(id)?,
            version: decode(version)?,
        }),
        _ => Err(unknown()),
    }
}

async fn bedrock(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = state.request_id();
    let mut response = match handle(&state, &method, &uri, &headers, body, &request_id).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

async fn handle(
    state: &SharedState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
) -> Result<Response, BedrockError> {
    let route = route(uri)?;
    if method != Method::POST {
        return Err(BedrockError::new(
            ErrorKind::UnknownOperationException,
            format!("{method} is not supported on {}", uri.path()),
        ));
    }
    let limit = state.config().max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        BedrockError::validation(format!(
            "The request body could not be read or is larger than the limit of {limit} bytes."
        ))
    })?;
    match route {
        Route::Model { id, op } => {
            state.record(op.name(), &id, &body);
            let (counted_as, result) = model_call(state, &id, op, headers, body, request_id).await;
            state.count(op.name(), &counted_as, result.is_err());
            result
        }
        Route::Guardrail { id, version } => {
            state.record("ApplyGuardrail", &id, &body);
            let result = apply_guardrail(state, &id, &version, &body);
            state.count("ApplyGuardrail", &id, result.is_err());
            result
        }
    }
}

fn parse_json(body: &Bytes) -> Result<Value, BedrockError> {
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
fn require_json_content_type(headers: &HeaderMap, blob_body: bool) -> Result<(), BedrockError> {
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

/// Runs one model operation; returns the model ID the call is counted under (the base
/// model when the identifier resolved) and the response.
async fn model_call(
    state: &SharedState,
    raw_id: &str,
    op: ModelOp,
    headers: &HeaderMap,
    body: Bytes,
    request_id: &str,
) -> (String, Result<Response, BedrockError>) {
    let model = match resolve(&state.config(), raw_id) {
        Ok(model) => model,
        Err(e) => return (raw_id.to_owned(), Err(e)),
    };
    let base = model.base_id.clone();
    let result = match op {
        ModelOp::CountTokens => count_tokens(&model, &body),
        _ => infer(state, &model, op, headers, &body, request_id).await,
    };
    (base, result)
}

/// Parses the request of `op` into a prompt.
fn prompt_for(
    model: &ResolvedModel,
    op: ModelOp,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Prompt, BedrockError> {
    let blob_body = matches!(
        op,
        ModelOp::InvokeModel | ModelOp::InvokeModelWithResponseStream
    );
    require_json_content_type(headers, blob_body)?;
    let value = parse_json(body)?;
    let converse = match op {
        ModelOp::Converse | ModelOp::ConverseStream | ModelOp::CountTokens => value,
        ModelOp::InvokeModel | ModelOp::InvokeModelWithResponseStream => {
            if model.spec.provider == "anthropic" {
                invoke::anthropic_to_converse(&value)?
            } else {
                invoke::generic_to_converse(&value)?
            }
        }
    };
    // serde_json maps are ordered, so this is a canonical form: the same request in another
    // key order or spacing gets the same answer.
    let fingerprint = serde_json::to_vec(&converse).unwrap_or_default();
    ConverseBody::parse(converse)?.into_prompt(model, fingerprint)
}

fn count_tokens(model: &ResolvedModel, body: &Bytes) -> Result<Response, BedrockError> {
    let value = parse_json(body)?;
    let input = value
        .get("input")
        .ok_or_else(|| BedrockError::validation("Malformed input request: #: required key [input] not found, please reformat your input and try again."))?;
    let converse = if let Some(c) = input.get("converse") {
        c.clone()
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
        if model.spec.provider == "anthropic" {
            invoke::anthropic_to_converse(&inner)?
        } else {
            invoke::generic_to_converse(&inner)?
        }
    } else {
        return Err(BedrockError::validation(
            "input must have a converse or invokeModel member.",
        ));
    };
    let prompt = ConverseBody::parse(converse)?.into_prompt(model, Vec::new())?;
    Ok(axum::Json(json!({ "inputTokens": prompt.input_tokens })).into_response())
}

/// The answer, after the request's guardrail (if any) has looked at input and output.
fn answer(
    state: &SharedState,
    model: &ResolvedModel,
    prompt: &Prompt,
    malformed: bool,
) -> Result<Output, BedrockError> {
    let guard = match &prompt.guardrail {
        None => None,
        Some((id, version)) => Some({
            check_guardrail_ref(id, version, "guardrailConfig.")?;
            state.config().guardrails.get(id).cloned().ok_or_else(|| {
            BedrockError::validation(format!(
                "The guardrail identifier or version provided in the request does not exist: {id}"
            ))
        })?
        }),
    };
    if let Some(spec) = &guard
        && guardrail::assess(spec, &prompt.input_texts)?.blocked()
    {
        return Ok(Output::from_text(
            &spec.blocked_input_messaging,
            StopReason::GuardrailIntervened,
        ));
    }
    let output = generate(prompt, &model.base_id, malformed);
    let Some(spec) = guard else { return Ok(output) };
    let text = output.text();
    if text.is_empty() {
        return Ok(output);
    }
    let assessment = guardrail::assess(&spec, std::slice::from_ref(&text))?;
    if assessment.blocked() {
        Ok(Output::from_text(
            &spec.blocked_outputs_messaging,
            StopReason::GuardrailIntervened,
        ))
    } else if assessment.intervened() {
        let masked = assessment.outputs.first().cloned().unwrap_or_default();
        Ok(Output::from_text(&masked, StopReason::GuardrailIntervened))
    } else {
        Ok(output)
    }
}

async fn infer(
    state: &SharedState,
    model: &ResolvedModel,
    op: ModelOp,
    headers: &HeaderMap,
    body: &Bytes,
    request_id: &str,
) -> Result<Response, BedrockError> {
    let prompt = prompt_for(model, op, headers, body)?;
    let streaming = matches!(
        op,
        ModelOp::ConverseStream | ModelOp::InvokeModelWithResponseStream
    );
    if streaming && !model.spec.streaming {
        return Err(BedrockError::validation(
            "The model is unsupported for streaming.",
        ));
    }
    let faults = state.take_faults(&model.base_id);
    if let Some(kind) = faults.fail {
        return Err(BedrockError::of(kind));
    }
    let mut output = answer(state, model, &prompt, faults.malformed_output)?;
    if let Some(stop) = faults.stop_reason {
        output.stop_reason = stop;
    }
    let usage =
        if output.stop_reason == StopReason::GuardrailIntervened && prompt.cache_prefix.is_some() {
            Usage {
                input: prompt.input_tokens,
                output: output.output_tokens,
                ..Usage::default()
            }
        } else {
            state.usage(
                prompt.input_tokens,
                prompt.cache_prefix,
                output.output_tokens,
            )
        };
    let timing = state.timing(model, faults.extra_delay_ms);
    let fault = faults
        .mid_stream
        .map(|(after, kind)| MidStreamFault { after, kind });
    let anthropic = model.spec.provider == "anthropic";

    match op {
        ModelOp::Converse => {
            let latency = timing.total(output.output_tokens);
            sleep(latency).await;
            Ok(axum::Json(render::converse_response(&output, usage, latency)).into_response())
        }
        ModelOp::ConverseStream => Ok(stream_response(render::converse_stream_script(
            &output, usage, timing, fault,
        ))),
        ModelOp::InvokeModel => {
            let latency = timing.total(output.output_tokens);
            sleep(latency).await;
            let body = if anthropic {
                render::anthropic_response(&output, usage, &model.base_id, request_id)
            } else {
                render::generic_response(&output, usage)
            };
            let mut response = axum::Json(body).into_response();
            let h = response.headers_mut();
            h.insert(
                "x-amzn-bedrock-input-token-count",
                HeaderValue::from(usage.input),
            );
            h.insert(
                "x-amzn-bedrock-output-token-count",
                HeaderValue::from(usage.output),
            );
            h.insert(
                "x-amzn-bedrock-cache-read-input-token-count",
                HeaderValue::from(usage.cache_read),
            );
            h.insert(
                "x-amzn-bedrock-cache-write-input-token-count",
                HeaderValue::from(usage.cache_write),
            );
            h.insert(
                "x-amzn-bedrock-invocation-latency",
                HeaderValue::from(latency.as_millis() as u64),
            );
            Ok(response)
        }
        ModelOp::InvokeModelWithResponseStream => {
            let steps = if anthropic {
                render::anthropic_stream_script(
                    &output,
                    usage,
                    &model.base_id,
                    request_id,
                    timing,
                    fault,
                )
            } else {
                render::generic_stream_script(&output, usage, timing, fault)
            };
            Ok(stream_response(steps))
        }
        ModelOp::CountTokens => count_tokens(model, body),
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// An HTTP 200 whose body sends each frame after its delay: the first byte leaves with the
/// first frame, not when the answer is complete.
fn stream_response(steps: Vec<Step>) -> Response {
    let frames = futures::stream::unfold(steps.into_iter(), |mut steps| async move {
        let step = steps.next()?;
        sleep(step.delay).await;
        Some((Ok::<Bytes, Infallible>(step.frame), steps))
    });
    let mut response = Response::new(Body::from_stream(frames));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(eventstream::CONTENT_TYPE),
    );
    response
}

/// Bedrock's patterns for a guardrail identifier (an ID or its ARN) and version.
fn check_guardrail_ref(id: &str, version: &str, at: &str) -> Result<(), BedrockError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let id_ok = id.len() <= 2048
        && (plain(id)
            || id.strip_prefix("arn:").is_some_and(|arn| {
                let parts: Vec<&str> = arn.splitn(5, ':').collect();
                matches!(
                    parts[..],
                    [partition, "bedrock", region, account, resource]
                        if partition.starts_with("aws")
                            && (1..=20).contains(&region.len())
                            && account.len() == 12
                            && account.bytes().all(|b| b.is_ascii_digit())
                            && resource.strip_prefix("guardrail/").is_some_and(plain)
                )
            }));
    if !id_ok {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{id}' at '{at}guardrailIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: (([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{{1,20}}:[0-9]{{12}}:guardrail/[a-z0-9]+))"
        )));
    }
    let version_ok = version == "DRAFT"
        || ((1..=8).contains(&version.len())
            && version.bytes().all(|b| b.is_ascii_digit())
            && !version.starts_with('0'));
    if !version_ok {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{version}' at '{at}guardrailVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (([1-9][0-9]{{0,7}})|(DRAFT))"
        )));
    }
    Ok(())
}

fn apply_guardrail(
    state: &SharedState,
    id: &str,
    version: &str,
    body: &Bytes,
) -> Result<Response, BedrockError> {
    check_guardrail_ref(id, version, "")?;
    let spec = state.config().guardrails.get(id).cloned().ok_or_else(|| {
        BedrockError::new(
            ErrorKind::ResourceNotFoundException,
            format!("The guardrail {id} (version {version}) was not found."),
        )
    })?;
    let value = parse_json(body)?;
    let source = value.get("source").and_then(Value::as_str).ok_or_else(|| {
        BedrockError::validation("1 validation error detected: Value null at 'source' failed to satisfy constraint: Member must not be null")
    })?;
    let source_is_input = match source {
        "INPUT" => true,
        "OUTPUT" => false,
        other => {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{other}' at 'source' failed to satisfy constraint: Member must satisfy enum value set: [INPUT, OUTPUT]"
            )));
        }
    };
    let content = value.get("content").and_then(Value::as_array).ok_or_else(|| {
        BedrockError::validation("1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null")
    })?;
    let texts: Vec<String> = content
        .iter()
        .filter_map(|block| {
            block
                .get("text")
                .and_then(|t| t.get("text"))
                .and_then(Value::as_str)
        })
        .map(str::to_owned)
        .collect();
    let assessment = guardrail::assess(&spec, &texts)?;
    Ok(axum::Json(guardrail::apply_response(
        &spec,
        &assessment,
        source_is_input,
    ))
    .into_response())
}
