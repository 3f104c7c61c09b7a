//! The admin API under `/_emulator/`, which tests drive at run time.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /_emulator/health` | `{"status": "ok"}` |
//! | `GET /_emulator/calls` | call counters per operation and model, and the total; `regions`: the same per signed region; `profiles`: calls per application inference profile ARN and operation |
//! | `GET /_emulator/requests?limit=N` | the last N requests received (operation, `model_id` as sent, `region`, `trace_header` when the call carried `X-Amzn-Trace-Id`, body) |
//! | `GET /_emulator/faults` | active faults by model; `regions`: faults limited to one region, by region and model |
//! | `POST /_emulator/faults` | set faults: `{"model": "ID or *", "region"?: "us-west-2", "throttle_next": 2, ...}` (with `region`, only calls signed for it meet them) |
//! | `DELETE /_emulator/faults` | clear every fault, of every region |
//! | `GET/POST /_emulator/latency` | global or per-model `{"model"?, "ttft_ms", "per_token_ms"}` |
//! | `GET /_emulator/models` | the model catalog |
//! | `GET /_emulator/batch/faults` | active batch faults |
//! | `POST /_emulator/batch/faults` | set batch faults: `{"fail_every": 2, "fail_next_jobs": 1, ...}` |
//! | `DELETE /_emulator/batch/faults` | clear every batch fault |
//! | `POST /_emulator/reset` | counters, requests, prompt cache, batch jobs, application inference profiles and faults back to start |

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
use crate::state::CallCount;

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

/// Operation -> model -> counts, and the total.
type Table = BTreeMap<String, BTreeMap<String, CallCount>>;

fn add(table: &mut Table, op: &str, what: &str, count: CallCount) -> u64 {
    let entry = table
        .entry(op.to_owned())
        .or_default()
        .entry(what.to_owned())
        .or_default();
    entry.calls += count.calls;
    entry.errors += count.errors;
    count.calls
}

async fn calls(State(state): State<SharedState>) -> impl IntoResponse {
    let mut operations = Table::new();
    let mut regions: BTreeMap<String, (u64, Table)> = BTreeMap::new();
    let mut profiles = Table::new();
    let mut total = 0;
    for (key, count) in state.detailed_counters() {
        total += add(&mut operations, &key.operation, &key.model, count);
        let (region_total, table) = regions.entry(key.region.clone()).or_default();
        *region_total += add(table, &key.operation, &key.model, count);
        if !key.profile.is_empty() {
            add(&mut profiles, &key.profile, &key.operation, count);
        }
    }
    let regions: BTreeMap<String, Value> = regions
        .into_iter()
        .map(|(region, (total, operations))| {
            (region, json!({ "total": total, "operations": operations }))
        })
        .collect();
    axum::Json(json!({
        "total": total,
        "operations": operations,
        "regions": regions,
        "profiles": profiles,
    }))
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

fn all_faults(state: &SharedState) -> Value {
    json!({ "faults": state.faults(), "regions": state.region_faults() })
}

async fn faults(State(state): State<SharedState>) -> impl IntoResponse {
    axum::Json(all_faults(&state))
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
    match update.region.clone() {
        Some(region) if region.is_empty() => {
            return bad_request("region must not be empty; leave it out for every region".into());
        }
        Some(region) => state.update_region_faults(&region, |faults| {
            faults.entry(model.clone()).or_default().merge(update);
        }),
        None => {
            state.update_faults(|faults| faults.entry(model.clone()).or_default().merge(update));
        }
    }
    axum::Json(all_faults(&state)).into_response()
}

async fn clear_faults(State(state): State<SharedState>) -> impl IntoResponse {
    state.clear_faults();
    axum::Json(json!({ "faults": {}, "regions": {} }))
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
