//! The Bedrock Runtime HTTP surface: the five model operations, ApplyGuardrail and the
//! Knowledge Base operations (Retrieve, RetrieveAndGenerate); the control plane's
//! operations are handed to [`crate::control`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use crate::catalog::resolve;
use crate::control;
use crate::embedding;
use crate::error::{BedrockError, ErrorKind};
use crate::eventstream::{self, Step};
use crate::guarded;
use crate::guardrail;
use crate::invoke::Family;
use crate::knowledge;
use crate::output::StopReason;
use crate::profiles;
use crate::region;
use crate::render::{self, Extras, MidStreamFault, Usage};
use crate::request::{ModelOp, Routed, Target, routed_prompt};
use crate::router::router_of;
use crate::routes::{Route, route};
use crate::state::{Caller, EmulatorState};

pub type SharedState = Arc<EmulatorState>;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .nest("/_emulator", crate::admin::router())
        .fallback(bedrock)
        .with_state(state)
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
    let route = route(method, uri)?;
    if *method != route.method() {
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
    let region = region::of_request(headers, &state.config().region);
    let trace = headers.get("x-amzn-trace-id").and_then(|v| v.to_str().ok());
    let caller = Caller {
        region: &region,
        profile: None,
    };
    match route {
        Route::Model { id, op } => {
            state.record_traced(op.name(), &id, &region, trace, &body);
            let (counted_as, result) =
                model_call(state, &id, op, headers, body, request_id, &region).await;
            // A call through an application inference profile is counted under the profile
            // too, so usage can be told apart per profile.
            let caller = Caller {
                profile: profiles::is_application_profile_arn(&id).then_some(id.as_str()),
                ..caller
            };
            state.count(op.name(), &counted_as, caller, result.is_err());
            result
        }
        Route::Guardrail { id, version } => {
            state.record_traced("ApplyGuardrail", &id, &region, trace, &body);
            let result = guardrail::apply(&state.config().guardrails, &id, &version, &body);
            state.count("ApplyGuardrail", &id, caller, result.is_err());
            result
        }
        Route::Retrieve { knowledge_base_id } => {
            state.record_traced("Retrieve", &knowledge_base_id, &region, trace, &body);
            let result = knowledge::serve::retrieve(state, &knowledge_base_id, &region, &body);
            state.count("Retrieve", &knowledge_base_id, caller, result.is_err());
            result
        }
        Route::RetrieveAndGenerate => {
            let counted_as = knowledge::serve::knowledge_base_named(&body);
            state.record_traced("RetrieveAndGenerate", &counted_as, &region, trace, &body);
            let result = knowledge::serve::retrieve_and_generate(state, &region, &body, request_id);
            state.count("RetrieveAndGenerate", &counted_as, caller, result.is_err());
            result
        }
        Route::Control(control) => control::serve(state, control, uri, &region, &body),
    }
}

/// Runs one model operation for a caller in `region`; returns the model ID the call is
/// counted under (the base model that answered, when the identifier resolved) and the
/// response.
pub(crate) async fn model_call(
    state: &SharedState,
    raw_id: &str,
    op: ModelOp,
    headers: &HeaderMap,
    body: Bytes,
    request_id: &str,
    region: &str,
) -> (String, Result<Response, BedrockError>) {
    // A profile created through the control plane answers as the model it copied; other
    // application profile ARNs are looked up in the configured ones.
    let created_profile_base = profiles::base_of(state, raw_id);
    let target = {
        let config = state.config();
        match router_of(&config, raw_id) {
            Some(Ok(router)) => Ok(Target::Router(router)),
            Some(Err(e)) => Err(e),
            None => resolve(&config, created_profile_base.as_deref().unwrap_or(raw_id))
                .map(Target::Model),
        }
    };
    let target = match target {
        Ok(target) => target,
        Err(e) => return (raw_id.to_owned(), Err(e)),
    };
    if let Target::Model(model) = &target
        && embedding::is_embedding(model)
    {
        let result = embedding::serve(state, model, op, headers, &body, request_id, region).await;
        return (model.base_id.clone(), result);
    }
    let routed = match routed_prompt(&target, op, headers, &body) {
        Ok(routed) => routed,
        Err(e) => {
            let counted = match &target {
                Target::Model(m) => m.base_id.clone(),
                Target::Router(_) => raw_id.to_owned(),
            };
            return (counted, Err(e));
        }
    };
    let base = routed.model.base_id.clone();
    if op != ModelOp::CountTokens
        && !state.provisioned_take(raw_id, u64::from(routed.prompt.input_tokens))
    {
        return (
            base,
            Err(BedrockError::new(
                ErrorKind::ThrottlingException,
                "Too many tokens, please wait before trying again.",
            )),
        );
    }
    let result = match op {
        ModelOp::CountTokens => {
            Ok(axum::Json(json!({ "inputTokens": routed.prompt.input_tokens })).into_response())
        }
        _ => infer(state, routed, op, request_id, region).await,
    };
    (base, result)
}

async fn infer(
    state: &SharedState,
    routed: Routed,
    op: ModelOp,
    request_id: &str,
    region: &str,
) -> Result<Response, BedrockError> {
    let Routed {
        model,
        prompt,
        invoked_model_arn,
    } = routed;
    let streaming = matches!(
        op,
        ModelOp::ConverseStream | ModelOp::InvokeModelWithResponseStream
    );
    if streaming && !model.spec.streaming {
        return Err(BedrockError::validation(
            "The model is unsupported for streaming.",
        ));
    }
    let faults = state.take_faults(&model.base_id, region);
    if let Some(kind) = faults.fail {
        return Err(BedrockError::of(kind));
    }
    let guarded = guarded::answer(
        &state.config().guardrails,
        &prompt,
        &model.base_id,
        faults.malformed_output,
        op == ModelOp::ConverseStream,
    )?;
    let mut output = guarded.output;
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
    let timing = state.timing(&model, faults.extra_delay_ms);
    let fault = faults
        .mid_stream
        .map(|(after, kind)| MidStreamFault { after, kind });
    let family = Family::of(&model);
    let mut trace = serde_json::Map::new();
    if let Some(guardrail) = guarded.trace {
        trace.insert("guardrail".into(), guardrail);
    }
    if let Some(arn) = invoked_model_arn {
        trace.insert("promptRouter".into(), json!({ "invokedModelId": arn }));
    }
    let extras = Extras {
        serving: prompt.serving.clone(),
        trace: (!trace.is_empty()).then_some(Value::Object(trace)),
        held_chunk_chars: guarded.held_chunk_chars,
    };

    match op {
        ModelOp::Converse => {
            let latency = timing.total(output.output_tokens);
            sleep(latency).await;
            Ok(
                axum::Json(render::converse_response(&output, usage, latency, &extras))
                    .into_response(),
            )
        }
        ModelOp::ConverseStream => Ok(stream_response(render::converse_stream_script(
            &output, usage, timing, fault, &extras,
        ))),
        ModelOp::InvokeModel | ModelOp::BatchRecord => {
            let latency = timing.total(output.output_tokens);
            if op == ModelOp::InvokeModel {
                sleep(latency).await;
            }
            let body = match family {
                Family::Anthropic => {
                    render::anthropic_response(&output, usage, &model.base_id, request_id)
                }
                Family::Nova => render::nova_response(&output, usage),
                Family::Llama3 | Family::Generic => render::llama_response(&output, usage),
            };
            Ok(invoke_response(body, usage, latency))
        }
        ModelOp::InvokeModelWithResponseStream => {
            let steps = match family {
                Family::Anthropic => render::anthropic_stream_script(
                    &output,
                    usage,
                    &model.base_id,
                    request_id,
                    timing,
                    fault,
                ),
                Family::Nova => render::nova_stream_script(&output, usage, timing, fault),
                Family::Llama3 | Family::Generic => {
                    render::llama_stream_script(&output, usage, timing, fault)
                }
            };
            Ok(stream_response(steps))
        }
        ModelOp::CountTokens => {
            Ok(axum::Json(json!({ "inputTokens": prompt.input_tokens })).into_response())
        }
    }
}

/// InvokeModel's response: the body, and usage and latency in Bedrock's headers.
fn invoke_response(body: Value, usage: Usage, latency: Duration) -> Response {
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
    response
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
