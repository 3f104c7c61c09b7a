//! Batch inference (the Bedrock control plane's model invocation jobs): CreateModelInvocationJob,
//! GetModelInvocationJob, ListModelInvocationJobs and StopModelInvocationJob, served on the
//! runtime's port so one emulator stands in for both Bedrock clients.
//!
//! Jobs read their records from S3 and write their results back (moto locally), each
//! record answered by the same InvokeModel path as a live call, so a batch job's
//! `modelOutput` is byte for byte what InvokeModel would have answered.

pub mod faults;
pub mod input;
pub mod run;
pub mod s3;
pub mod store;
pub mod validate;

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use faults::{BatchFaultUpdate, BatchFaults};
pub use store::{Job, JobStore, Status};

use crate::catalog::resolve;
use crate::error::{BedrockError, ErrorKind};
use crate::server::SharedState;

/// `batch:` in the emulator config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// How long each phase of a job lasts (Submitted, Validating, Scheduled, InProgress), in
    /// milliseconds.
    pub step_ms: u64,
    /// The S3 endpoint jobs read and write (`http://127.0.0.1:PORT`); when absent,
    /// `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`.
    pub s3_endpoint: Option<String>,
    /// Fewest records a job may have (Bedrock's quota is 100; 0 lets tests stay small).
    pub min_records: u64,
    /// Region and account of job ARNs.
    pub region: String,
    pub account_id: String,
    /// Faults active at start.
    pub faults: BatchFaults,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            step_ms: 100,
            s3_endpoint: None,
            min_records: 0,
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            faults: BatchFaults::default(),
        }
    }
}

fn json_response(body: Value) -> Response {
    axum::Json(body).into_response()
}

/// The model ID a CreateModelInvocationJob body names, to count and record the call under.
pub fn model_named(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("modelId").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The job a Get or Stop is counted under: its ID, whether the caller named it by ID or ARN.
pub fn counted_job(identifier: &str) -> &str {
    identifier.rsplit('/').next().unwrap_or(identifier)
}

pub fn create(state: &SharedState, body: &[u8]) -> Result<Response, BedrockError> {
    let request = validate::create_request(body)?;
    let store = state.batch();
    if let Some(job) = request
        .client_request_token
        .as_deref()
        .and_then(|t| store.by_token(t))
    {
        return Ok(json_response(json!({ "jobArn": job.arn })));
    }
    let (region, account) = {
        let config = state.config();
        let model = resolve(&config, &request.model_id)?;
        if !model.spec.batch {
            return Err(BedrockError::validation(format!(
                "The model {} does not support batch inference.",
                request.model_id
            )));
        }
        (config.batch.region.clone(), config.batch.account_id.clone())
    };
    let (seq, id) = store.new_id();
    let now = store::now();
    let job = Job {
        seq,
        arn: format!("arn:aws:bedrock:{region}:{account}:model-invocation-job/{id}"),
        id: id.clone(),
        name: request.job_name,
        model_id: request.model_id,
        role_arn: request.role_arn,
        client_request_token: request.client_request_token,
        input_data_config: request.input_data_config,
        output_data_config: request.output_data_config,
        vpc_config: request.vpc_config,
        input_uri: request.input_uri,
        output_uri: request.output_uri,
        timeout_hours: request.timeout_hours,
        status: Status::Submitted,
        message: None,
        submit_time: now,
        last_modified: now,
        end_time: None,
        counts: None,
        stop_requested: false,
    };
    let stored = store.insert(job);
    // A concurrent request with the same token may have won; only the stored job runs.
    if stored.id == id {
        run::spawn(state.clone(), id);
    }
    Ok(json_response(json!({ "jobArn": stored.arn })))
}

fn not_found(identifier: &str) -> BedrockError {
    BedrockError::new(
        ErrorKind::ResourceNotFoundException,
        format!("The model invocation job {identifier} was not found."),
    )
}

pub fn get(state: &SharedState, identifier: &str) -> Result<Response, BedrockError> {
    let id = validate::job_id(identifier)?;
    let job = state
        .batch()
        .get(&id)
        .ok_or_else(|| not_found(identifier))?;
    Ok(json_response(job.to_json()))
}

pub fn list(
    state: &SharedState,
    query: &HashMap<String, String>,
) -> Result<Response, BedrockError> {
    let q = validate::list_query(query)?;
    let mut jobs: Vec<Job> = state
        .batch()
        .all()
        .into_iter()
        .filter(|j| q.status.is_none_or(|s| j.status == s))
        .filter(|j| {
            q.name_contains
                .as_ref()
                .is_none_or(|n| j.name.contains(n.as_str()))
        })
        .filter(|j| q.submitted_after.is_none_or(|t| j.submit_time > t))
        .filter(|j| q.submitted_before.is_none_or(|t| j.submit_time < t))
        .collect();
    jobs.sort_by(|a, b| a.submit_time.cmp(&b.submit_time).then(a.seq.cmp(&b.seq)));
    if q.descending {
        jobs.reverse();
    }
    let end = q.offset.saturating_add(q.max_results).min(jobs.len());
    let page: Vec<Value> = jobs
        .get(q.offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(Job::to_json)
        .collect();
    let mut body = json!({ "invocationJobSummaries": page });
    if end < jobs.len() {
        body["nextToken"] = json!(end.to_string());
    }
    Ok(json_response(body))
}

pub fn stop(state: &SharedState, identifier: &str) -> Result<Response, BedrockError> {
    let id = validate::job_id(identifier)?;
    let outcome = state
        .batch()
        .update(&id, |job| {
            if job.status.is_final() {
                return Err(BedrockError::validation(format!(
                    "The model invocation job {} can't be stopped because its status is {}.",
                    job.arn,
                    job.status.as_str()
                )));
            }
            job.stop_requested = true;
            job.status = Status::Stopping;
            Ok(())
        })
        .ok_or_else(|| not_found(identifier))?;
    outcome.map(|()| json_response(json!({})))
}
