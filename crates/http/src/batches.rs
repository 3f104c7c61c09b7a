//! `GET /v1/batches/{job_id}`: the status of a batch job. The four `counts` keys are a
//! contract scripts rely on; fields may be added, not removed.

use quarry_core::bulk::{BulkJob, JobPlan};
use quarry_core::jobs::{ItemRecord, ItemStatus, JobCounts, JobState};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchStatus {
    pub job_id: String,
    /// `queued`, `running` or `done`.
    pub state: JobState,
    /// The same, in words: `running: 12 of 20 items finished, 3 in flight`.
    pub status: String,
    pub counts: Counts,
    /// Items the submitter announced, when it did.
    pub expected: Option<u64>,
    pub cost_usd: String,
    pub failures: Vec<Failure>,
    /// `online` or `bulk` (Bedrock batch inference), and why.
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_reason: Option<String>,
    /// The Bedrock batch inference job of a bulk job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk: Option<Bulk>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bulk {
    /// `collecting`, then Bedrock's state (`submitted`, `validating`, `scheduled`,
    /// `in_progress`, `stopping`), `settling` while results are stored, then how it ended
    /// (`completed`, `partially_completed`, `failed`, `stopped`, `expired`), or `refused`
    /// (its estimate did not fit the budget) or `cancelled`.
    pub status: String,
    pub job_arn: Option<String>,
    pub model: Option<String>,
    /// Records handed to Bedrock, and Bedrock's counts once its manifest is written.
    pub records: u64,
    pub processed: Option<u64>,
    pub succeeded: Option<u64>,
    pub errors: Option<u64>,
    /// Items that ran online instead.
    pub online: u64,
    /// The job's estimate (every record at its `max_tokens`, at the batch price): held
    /// against the budget from submission until the results are charged.
    pub estimate_usd: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counts {
    /// Items started (claimed by a worker at least once). Kept under this name for scripts;
    /// `started` says the same.
    pub submitted: u64,
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub item_id: String,
    pub reason: Option<String>,
}

impl BatchStatus {
    pub fn new(job_id: &str, counts: &JobCounts, items: &[ItemRecord]) -> Self {
        let state = counts.state();
        let finished = counts.succeeded + counts.failed;
        let status = match (state, counts.expected) {
            (JobState::Queued, Some(e)) => format!("queued: {e} items announced, none started"),
            (JobState::Queued, None) => "queued: no item started".to_owned(),
            (_, Some(e)) => format!(
                "{}: {finished} of {e} items finished ({} succeeded, {} failed), {} in flight",
                state.as_str(),
                counts.succeeded,
                counts.failed,
                counts.in_flight()
            ),
            (_, None) => format!(
                "{}: {finished} items finished ({} succeeded, {} failed), {} in flight",
                state.as_str(),
                counts.succeeded,
                counts.failed,
                counts.in_flight()
            ),
        };
        Self {
            job_id: job_id.to_owned(),
            state,
            status,
            counts: Counts {
                submitted: counts.submitted,
                started: counts.submitted,
                succeeded: counts.succeeded,
                failed: counts.failed,
                in_flight: counts.in_flight(),
            },
            expected: counts.expected,
            cost_usd: counts.cost.to_usd_string(),
            failures: items
                .iter()
                .filter(|i| i.status == ItemStatus::Failed)
                .map(|i| Failure {
                    item_id: i.item_id.clone(),
                    reason: i.reason.clone(),
                })
                .collect(),
            mode: "online".into(),
            mode_reason: None,
            bulk: None,
        }
    }

    /// Adds the job's plan and, for a bulk job, its tracking record.
    pub fn with_plan(mut self, plan: Option<&JobPlan>, bulk: Option<&BulkJob>) -> Self {
        if let Some(p) = plan {
            self.mode = p.mode.as_str().to_owned();
            self.mode_reason = Some(p.reason.clone());
        }
        self.bulk = bulk.map(|b| Bulk {
            status: b.status(),
            job_arn: b.job_arn.clone(),
            model: b.model.clone(),
            records: b.records,
            processed: b.manifest.as_ref().map(|m| m.processed_record_count),
            succeeded: b.manifest.as_ref().map(|m| m.success_record_count),
            errors: b.manifest.as_ref().map(|m| m.error_record_count),
            online: b.online,
            estimate_usd: b.reserved.to_usd_string(),
            message: b.message.clone(),
        });
        self
    }
}
