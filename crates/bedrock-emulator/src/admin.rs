//! The admin API under `/_emulator/`, which tests drive at run time.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /_emulator/health` | `{"status": "ok"}` |
//! | `GET /_emulator/calls` | call counters per operation and model, and the total |
//! | `GET /_emulator/requests?limit=N` | the last N requests received (operation, model, body) |
//! | `GET /_emulator/faults` | active faults by model |
//! | `POST /_emulator/faults` | set faults: `{"model": "ID or *", "throttle_next": 2, ...}` |
//! | `DELETE /_emulator/faults` | clear every fault |
//! | `GET/POST /_emulator/latency` | global or per-model `{"model"?, "ttft_ms", "per_token_ms"}` |
//! | `GET /_emulator/models` | the model catalog |
//! | `GET /_emulator/batch/faults` | active batch faults |
//! | `POST /_emulator/batch/faults` | set batch faults: `{"fail_every": 2, "fail_next_jobs": 1, ...}` |
//! | `DELETE /_emulator/batch/faults` | clear every batch fault |
//! | `POST /_emulator/reset` | counters, requests, prompt cache, batch jobs and faults back to start |

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::batch::{BatchFaultUpdate, BatchFaults};
use crate::config::Latency;
use crate::faults::FaultUpdate;
use crate::server::SharedState;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/calls", get(calls))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/faults", get(faults).post(set_faults).delete(clear_faults))
        .route("/latency", get(latency).post(set_latency))
        .route("/models", get(models))
        .route(
            "/batch/faults",
            get(batch_faults)
                .post(set_batch_faults)
                .delete(clear_batch_faults),
        )
        .route("/reset", post(reset))
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

async fn calls(State(state): State<SharedState>) -> impl IntoResponse {
    let mut operations: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut total = 0;
    for ((op, model), count) in state.counters() {
        total += count.calls;
        operations.entry(op).or_default().insert(
            model,
            json!({ "calls": count.calls, "errors": count.errors }),
        );
    }
    axum::Json(json!({ "total": total, "operations": operations }))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn requests(State(state): State<SharedState>, Query(q): Query<Limit>) -> impl IntoResponse {
    axum::Json(json!({ "requests": state.recorded(q.limit.unwrap_or(usize::MAX)) }))
}

async fn clear_requests(State(state): State<SharedState>) -> impl IntoResponse {
    axum::Json(json!({ "cleared": state.clear_recorded() }))
}

async fn faults(State(state): State<SharedState>) -> impl IntoResponse {
    axum::Json(json!({ "faults": state.faults() }))
}

async fn set_faults(State(state): State<SharedState>, body: Bytes) -> Response {
    let update: FaultUpdate = match parse(&body) {
        Ok(u) => u,
        Err(message) => return bad_request(message),
    };
    let model = update.model.clone().unwrap_or_else(|| "*".to_owned());
    if model != "*" && !state.config().models.contains_key(&model) {
        return bad_request(format!(
            "unknown base model {model}; use a base model ID or *"
        ));
    }
    state.update_faults(|faults| faults.entry(model.clone()).or_default().merge(update));
    axum::Json(json!({ "faults": state.faults() })).into_response()
}

async fn clear_faults(State(state): State<SharedState>) -> impl IntoResponse {
    state.clear_faults();
    axum::Json(json!({ "faults": {} }))
}

async fn latency(State(state): State<SharedState>) -> impl IntoResponse {
    let config = state.config();
    let per_model: BTreeMap<&String, Latency> = config
        .models
        .iter()
        .filter_map(|(id, m)| m.latency.map(|l| (id, l)))
        .collect();
    axum::Json(json!({ "default": config.latency, "models": per_model }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyUpdate {
    model: Option<String>,
    ttft_ms: u64,
    per_token_ms: u64,
}

async fn set_latency(State(state): State<SharedState>, body: Bytes) -> Response {
    let update: LatencyUpdate = match parse(&body) {
        Ok(u) => u,
        Err(message) => return bad_request(message),
    };
    let latency = Latency {
        ttft_ms: update.ttft_ms,
        per_token_ms: update.per_token_ms,
    };
    let mut config = state.config_mut();
    match update.model {
        None => config.latency = latency,
        Some(model) => match config.models.get_mut(&model) {
            Some(spec) => spec.latency = Some(latency),
            None => return bad_request(format!("unknown base model {model}")),
        },
    }
    axum::Json(json!({ "latency": latency })).into_response()
}

async fn models(State(state): State<SharedState>) -> impl IntoResponse {
    let config = state.config();
    axum::Json(json!({
        "models": config.models,
        "application_inference_profiles": config.application_inference_profiles,
    }))
}

async fn batch_faults(State(state): State<SharedState>) -> impl IntoResponse {
    axum::Json(json!({ "faults": state.batch().faults() }))
}

async fn set_batch_faults(State(state): State<SharedState>, body: Bytes) -> Response {
    let update: BatchFaultUpdate = match parse(&body) {
        Ok(u) => u,
        Err(message) => return bad_request(message),
    };
    state.batch().update_faults(|faults| faults.merge(update));
    axum::Json(json!({ "faults": state.batch().faults() })).into_response()
}

async fn clear_batch_faults(State(state): State<SharedState>) -> impl IntoResponse {
    state
        .batch()
        .update_faults(|faults| *faults = BatchFaults::default());
    axum::Json(json!({ "faults": state.batch().faults() }))
}

async fn reset(State(state): State<SharedState>) -> impl IntoResponse {
    state.reset();
    axum::Json(json!({ "reset": true }))
}
