//! A job's life, in a task of its own: `Submitted`, `Validating` (the input is read),
//! `Scheduled`, `InProgress` (each record goes through InvokeModel), then the output files
//! are written and the job ends `Completed`, `PartiallyCompleted` (some records failed),
//! `Failed`, `Stopped` or `Expired`. Each phase lasts `batch.step_ms`, so callers polling
//! GetModelInvocationJob see the phases Bedrock goes through; the output exists before
//! the job reports it is done.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use super::faults::JobFaults;
use super::input::{self, InputFile};
use super::s3::{self, S3, S3Location};
use super::store::{self, Counts, Job, Status};
use crate::error::BedrockError;
use crate::request::ModelOp;
use crate::server::{SharedState, model_call};

pub fn spawn(state: SharedState, id: String) {
    tokio::spawn(run(state, id));
}

/// One record's outcome.
struct Outcome {
    line: Value,
    ok: bool,
    input_tokens: u64,
    output_tokens: u64,
}

async fn run(state: SharedState, id: String) {
    let step = Duration::from_millis(state.config().batch.step_ms);
    if !advance(&state, &id, step, Status::Validating).await {
        return;
    }
    let Some(job) = state.batch().get(&id) else {
        return;
    };
    let read = read_input(&state, &job).await;
    tokio::time::sleep(step).await;
    let files = match read {
        Ok(files) => files,
        Err(e) => return finish(&state, &id, Status::Failed, Some(e.message)),
    };
    let total = files.iter().map(|f| f.records.len() as u64).sum::<u64>();
    let min = state.config().batch.min_records;
    if total < min {
        return finish(
            &state,
            &id,
            Status::Failed,
            Some(format!(
                "The job has {total} records; a batch inference job needs at least {min}."
            )),
        );
    }
    let faults = state.batch().take_faults();
    if let Some(message) = faults.fail.clone() {
        return finish(&state, &id, Status::Failed, Some(message));
    }
    let _ = state.batch().update(&id, |job| {
        job.counts = Some(Counts {
            total,
            ..Counts::default()
        });
    });
    if !advance(&state, &id, step, Status::Scheduled).await {
        return;
    }
    if faults.expire {
        tokio::time::sleep(step).await;
        return finish(
            &state,
            &id,
            Status::Expired,
            Some("The job did not complete before its expiration time.".into()),
        );
    }
    if !advance(&state, &id, step, Status::InProgress).await {
        return;
    }
    let Some(outputs) = infer(&state, &job, &files, &faults).await else {
        return;
    };
    tokio::time::sleep(step).await;
    if let Err(e) = write_output(&state, &job, &files, &outputs).await {
        return finish(&state, &id, Status::Failed, Some(e.message));
    }
    let errors = state
        .batch()
        .get(&id)
        .and_then(|j| j.counts)
        .map_or(0, |c| c.error);
    let status = if errors > 0 {
        Status::PartiallyCompleted
    } else {
        Status::Completed
    };
    finish(&state, &id, status, None);
}

/// Waits out the current phase, then moves the job to `next`. False when the job is gone
/// (reset) or was stopped meanwhile (it is now `Stopped`).
async fn advance(state: &SharedState, id: &str, step: Duration, next: Status) -> bool {
    tokio::time::sleep(step).await;
    state
        .batch()
        .update(id, |job| {
            if job.status.is_final() {
                return false;
            }
            if job.stop_requested {
                job.status = Status::Stopped;
                job.end_time = Some(store::now());
                return false;
            }
            job.status = next;
            true
        })
        .unwrap_or(false)
}

fn finish(state: &SharedState, id: &str, status: Status, message: Option<String>) {
    let _ = state.batch().update(id, |job| {
        if job.status.is_final() {
            return;
        }
        job.status = if job.stop_requested {
            Status::Stopped
        } else {
            status
        };
        job.message = message;
        job.end_time = Some(store::now());
    });
}

fn s3_endpoint(state: &SharedState) -> Result<String, BedrockError> {
    s3::endpoint(state.config().batch.s3_endpoint.as_deref()).ok_or_else(|| {
        BedrockError::validation(
            "No S3 endpoint is configured: set batch.s3_endpoint, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL.",
        )
    })
}

async fn read_input(state: &SharedState, job: &Job) -> Result<Vec<InputFile>, BedrockError> {
    let endpoint = s3_endpoint(state)?;
    let s3 = S3 {
        http: &state.batch().http,
        endpoint: &endpoint,
    };
    input::read(&s3, &job.input_uri).await
}

/// Every record's output line, file by file; `None` when the job was stopped or forgotten.
async fn infer(
    state: &SharedState,
    job: &Job,
    files: &[InputFile],
    faults: &JobFaults,
) -> Option<Vec<Vec<Value>>> {
    let mut outputs = Vec::with_capacity(files.len());
    let mut index = 0;
    for file in files {
        let mut lines = Vec::with_capacity(file.records.len());
        for record in &file.records {
            let stopped = state.batch().get(&job.id).is_none_or(|j| j.stop_requested);
            if stopped {
                finish(state, &job.id, Status::Stopped, None);
                return None;
            }
            let outcome = match faults.record_error(&record.id, index) {
                Some((code, message)) => {
                    error_line(&record.id, &record.model_input, code, &message)
                }
                None => answer(state, &job.model_id, &record.id, &record.model_input).await,
            };
            let _ = state.batch().update(&job.id, |j| {
                let counts = j.counts.get_or_insert_with(Counts::default);
                counts.processed += 1;
                if outcome.ok {
                    counts.success += 1;
                } else {
                    counts.error += 1;
                }
                counts.input_tokens += outcome.input_tokens;
                counts.output_tokens += outcome.output_tokens;
            });
            lines.push(outcome.line);
            index += 1;
        }
        outputs.push(lines);
    }
    Some(outputs)
}

fn error_line(record_id: &str, model_input: &Value, code: u16, message: &str) -> Outcome {
    Outcome {
        line: json!({
            "recordId": record_id,
            "modelInput": model_input,
            "error": {"errorCode": code, "errorMessage": message},
        }),
        ok: false,
        input_tokens: 0,
        output_tokens: 0,
    }
}

fn header_count(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The record through InvokeModel, exactly as a live call would answer it.
async fn answer(
    state: &SharedState,
    model_id: &str,
    record_id: &str,
    model_input: &Value,
) -> Outcome {
    let body = Bytes::from(serde_json::to_vec(model_input).unwrap_or_default());
    let request_id = state.request_id();
    // Records run in the region of the job's ARN.
    let region = state.config().batch.region.clone();
    let (_, result) = model_call(
        state,
        model_id,
        ModelOp::BatchRecord,
        &HeaderMap::new(),
        body,
        &request_id,
        &region,
    )
    .await;
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            return error_line(record_id, model_input, e.kind.status().as_u16(), &e.message);
        }
    };
    let input_tokens = header_count(response.headers(), "x-amzn-bedrock-input-token-count");
    let output_tokens = header_count(response.headers(), "x-amzn-bedrock-output-token-count");
    let output = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).ok(),
        Err(_) => None,
    };
    match output {
        Some(model_output) => Outcome {
            line: json!({
                "recordId": record_id,
                "modelInput": model_input,
                "modelOutput": model_output,
            }),
            ok: true,
            input_tokens,
            output_tokens,
        },
        None => error_line(
            record_id,
            model_input,
            500,
            "The model's answer could not be read.",
        ),
    }
}

/// `{output}/{jobId}/{input name}.out` per input file, then `manifest.json.out`.
async fn write_output(
    state: &SharedState,
    job: &Job,
    files: &[InputFile],
    outputs: &[Vec<Value>],
) -> Result<(), BedrockError> {
    let endpoint = s3_endpoint(state)?;
    let s3 = S3 {
        http: &state.batch().http,
        endpoint: &endpoint,
    };
    let location = S3Location::parse(&job.output_uri).ok_or_else(|| {
        BedrockError::validation(format!(
            "The output S3 URI {} is not valid.",
            job.output_uri
        ))
    })?;
    let base = location.key.trim_end_matches('/');
    let key_of = |name: &str| {
        if base.is_empty() {
            format!("{}/{name}", job.id)
        } else {
            format!("{base}/{}/{name}", job.id)
        }
    };
    for (file, lines) in files.iter().zip(outputs) {
        let mut body = Vec::new();
        for line in lines {
            body.extend_from_slice(line.to_string().as_bytes());
            body.push(b'\n');
        }
        s3.put(
            &location.bucket,
            &key_of(&format!("{}.out", file.name)),
            body,
        )
        .await?;
    }
    let counts = state
        .batch()
        .get(&job.id)
        .and_then(|j| j.counts)
        .unwrap_or_default();
    let manifest = json!({
        "totalRecordCount": counts.total,
        "processedRecordCount": counts.processed,
        "successRecordCount": counts.success,
        "errorRecordCount": counts.error,
        "inputTokenCount": counts.input_tokens,
        "outputTokenCount": counts.output_tokens,
    });
    s3.put(
        &location.bucket,
        &key_of("manifest.json.out"),
        manifest.to_string().into_bytes(),
    )
    .await
}
