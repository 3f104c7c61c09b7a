//! Bulk jobs on Bedrock batch inference: the job as Bedrock tracks it, and the files it
//! reads and writes. Input is JSON Lines of `{"recordId", "modelInput"}` (the model's own
//! InvokeModel body); output, per input file `F`, is `{job id}/F.out` with one line per
//! record carrying `modelOutput` or `error`, and `{job id}/manifest.json.out` with the
//! counts. Parsing here never trusts a line: a record Quarry cannot read is reported as that
//! record's failure, never dropped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod mode;
mod tracked;

pub use self::mode::{BulkPolicy, JobMode, JobPlan, parse_deadline, resolve};
pub use self::tracked::{BulkJob, BulkPhase};

/// What became of an item kept for a bulk job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// Kept: it goes into the job's submission.
    Kept,
    /// Known already (a redelivery): nothing changed.
    Known,
    /// The job no longer collects items (submitted, or closed): the item runs online.
    Closed,
}

/// What Quarry asks Bedrock to run (CreateModelInvocationJob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkSubmission {
    /// Bedrock's job name: letters, digits and `+-.` (up to 63), unique enough to read.
    pub job_name: String,
    /// The model ID or inference profile the records are for.
    pub model_id: String,
    /// The service role Bedrock assumes to read and write the batch bucket.
    pub role_arn: String,
    /// `s3://bucket/prefix/` of the input JSONL.
    pub input_uri: String,
    /// `s3://bucket/prefix/` Bedrock writes under (`{job id}/...`).
    pub output_uri: String,
    /// Idempotency: the same token never starts a second job.
    pub client_token: String,
    pub timeout_hours: u32,
}

/// A Bedrock batch job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkState {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopping,
    Stopped,
    Expired,
}

impl BulkState {
    /// Bedrock's status name (`InProgress`, `PartiallyCompleted`, ...).
    pub fn from_bedrock(s: &str) -> Option<Self> {
        Some(match s {
            "Submitted" => Self::Submitted,
            "Validating" => Self::Validating,
            "Scheduled" => Self::Scheduled,
            "InProgress" => Self::InProgress,
            "Completed" => Self::Completed,
            "PartiallyCompleted" => Self::PartiallyCompleted,
            "Failed" => Self::Failed,
            "Stopping" => Self::Stopping,
            "Stopped" => Self::Stopped,
            "Expired" => Self::Expired,
            _ => return None,
        })
    }

    /// No further change will come: its output (if any) can be read.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::PartiallyCompleted
                | Self::Failed
                | Self::Stopped
                | Self::Expired
        )
    }

    /// Records may have been processed, so output files may exist.
    pub fn has_output(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::PartiallyCompleted | Self::Stopped | Self::Expired
        )
    }
}

/// What GetModelInvocationJob says of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkStatus {
    pub job_arn: String,
    pub state: BulkState,
    /// Bedrock's message (why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The output prefix of this job (`{output_uri}{job id}/`).
    pub output_prefix: String,
}

/// The job ID at the end of a job ARN (`.../model-invocation-job/abc123`).
pub fn job_id_of(arn: &str) -> &str {
    arn.rsplit_once('/').map_or(arn, |(_, id)| id)
}

/// One input line.
pub fn record_line(record_id: &str, model_input: &Value) -> String {
    serde_json::json!({"recordId": record_id, "modelInput": model_input}).to_string()
}

/// One output record: the model's answer, or Bedrock's error for it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRecord {
    pub record_id: String,
    pub outcome: Result<Value, RecordError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Bedrock's `errorCode` (an HTTP status), 0 when the line could not be read.
    pub code: u16,
    pub message: String,
}

/// Reads one output line. A line that is not a record says so in its error (with no
/// record ID, the caller cannot attribute it: it reports it as unreadable).
pub fn parse_output_line(line: &str) -> Result<OutputRecord, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let record_id = v
        .get("recordId")
        .and_then(Value::as_str)
        .ok_or("no recordId")?
        .to_owned();
    let outcome = match (v.get("modelOutput"), v.get("error")) {
        (Some(out), _) if out.is_object() => Ok(out.clone()),
        (_, Some(e)) => Err(RecordError {
            code: e
                .get("errorCode")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
            message: e
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or("Bedrock gave no reason")
                .to_owned(),
        }),
        _ => Err(RecordError {
            code: 0,
            message: "the record has neither modelOutput nor error".into(),
        }),
    };
    Ok(OutputRecord { record_id, outcome })
}

/// `manifest.json.out`: Bedrock's counts for the job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub total_record_count: u64,
    #[serde(default)]
    pub processed_record_count: u64,
    #[serde(default)]
    pub success_record_count: u64,
    #[serde(default)]
    pub error_record_count: u64,
    #[serde(default)]
    pub input_token_count: u64,
    #[serde(default)]
    pub output_token_count: u64,
}

/// `s3://bucket/key` -> (bucket, key).
pub fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_lines_are_records_or_their_errors_never_dropped() {
        let ok = parse_output_line(
            r#"{"recordId": "i1", "modelInput": {}, "modelOutput": {"content": []}}"#,
        )
        .unwrap();
        assert_eq!(ok.record_id, "i1");
        assert_eq!(ok.outcome, Ok(json!({"content": []})));
        let failed = parse_output_line(
            r#"{"recordId": "i2", "modelInput": {}, "error": {"errorCode": 400, "errorMessage": "bad"}}"#,
        )
        .unwrap();
        assert_eq!(
            failed.outcome,
            Err(RecordError {
                code: 400,
                message: "bad".into()
            })
        );
        let neither = parse_output_line(r#"{"recordId": "i3"}"#).unwrap();
        assert!(neither.outcome.is_err());
        assert!(parse_output_line("{").is_err());
        assert!(parse_output_line(r#"{"modelOutput": {}}"#).is_err());
    }

    #[test]
    fn states_uris_and_ids() {
        assert_eq!(
            BulkState::from_bedrock("PartiallyCompleted"),
            Some(BulkState::PartiallyCompleted)
        );
        assert!(BulkState::Stopped.is_final() && BulkState::Stopped.has_output());
        assert!(!BulkState::InProgress.is_final());
        assert!(!BulkState::Failed.has_output());
        assert_eq!(BulkState::from_bedrock("Done"), None);
        assert_eq!(split_s3_uri("s3://b/in/x.jsonl"), Some(("b", "in/x.jsonl")));
        assert_eq!(split_s3_uri("s3://b"), Some(("b", "")));
        assert_eq!(split_s3_uri("https://b/x"), None);
        assert_eq!(
            job_id_of("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"),
            "abc123def456"
        );
        let line = record_line("i1", &json!({"a": 1}));
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"recordId": "i1", "modelInput": {"a": 1}})
        );
        let m: Manifest = serde_json::from_str(
            r#"{"totalRecordCount": 3, "processedRecordCount": 3, "successRecordCount": 2, "errorRecordCount": 1, "inputTokenCount": 30, "outputTokenCount": 9}"#,
        )
        .unwrap();
        assert_eq!((m.success_record_count, m.error_record_count), (2, 1));
    }
}
