//! `GET /v1/batches/{job_id}`: the status of a batch job. The four `counts` keys are a
//! contract scripts rely on; fields may be added, not removed.

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
        }
    }
}
