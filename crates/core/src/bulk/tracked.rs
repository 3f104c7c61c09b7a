//! A bulk job as Quarry tracks it, from its first item to its last result: kept in the jobs
//! table beside the job's header, and rewritten at each step, so a tracker that stops at any
//! point resumes where the record says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BulkState, Manifest};
use crate::pricing::MicroUsd;

/// Where a bulk job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkPhase {
    /// Items arrive and are kept until the job is complete.
    Collecting,
    /// Handed to Bedrock: its state is in `bedrock_state`.
    Running,
    /// Bedrock is done: results are being stored item by item.
    Settling,
    /// Every item has its outcome.
    Settled,
    /// Not submitted: the estimate did not fit the budget (the reason says by how much).
    Refused,
    /// Cancelled before it was submitted.
    Cancelled,
}

/// The tracking record of one bulk job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkJob {
    pub tenant: String,
    pub job_id: String,
    pub phase: BulkPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock_state: Option<BulkState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_arn: Option<String>,
    /// The model (or inference profile) the job runs on, and its base model (priced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Records handed to Bedrock.
    #[serde(default)]
    pub records: u64,
    /// Items sent to the online path instead (at submission, or failed by Bedrock).
    #[serde(default)]
    pub online: u64,
    /// Bedrock's counts, from its manifest, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// The estimate held against the tenant's budget until the results are charged.
    #[serde(default)]
    pub reserved: MicroUsd,
    /// The prompt version each prompt selector of the job resolved to at submission
    /// (`name@label`): results are checked against what was sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, u64>,
    /// Bedrock's message, or why Quarry refused or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Polls since the Bedrock state last changed (the backoff).
    #[serde(default)]
    pub idle_polls: u32,
    /// Unix milliseconds: the next status check is not before this.
    #[serde(default)]
    pub next_poll_ms: i64,
    /// Unix milliseconds of the last item collected (a job of unannounced size is
    /// submitted after a quiet time).
    #[serde(default)]
    pub last_item_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_ms: Option<i64>,
    /// `quarry batch cancel` asked for it.
    #[serde(default)]
    pub cancel_requested: bool,
}

impl BulkJob {
    pub fn new(tenant: &str, job_id: &str, now_ms: i64) -> Self {
        Self {
            tenant: tenant.to_owned(),
            job_id: job_id.to_owned(),
            phase: BulkPhase::Collecting,
            bedrock_state: None,
            job_arn: None,
            model: None,
            base_model: None,
            records: 0,
            online: 0,
            manifest: None,
            reserved: MicroUsd::ZERO,
            pins: BTreeMap::new(),
            message: None,
            idle_polls: 0,
            next_poll_ms: 0,
            last_item_ms: now_ms,
            submitted_ms: None,
            cancel_requested: false,
        }
    }

    /// The status shown to people: `collecting`, then Bedrock's state (`submitted`,
    /// `validating`, `in_progress`, ...), `settling` while results are stored, then the
    /// state Bedrock ended in (`completed`, `stopped`, ...); or `refused` / `cancelled`.
    pub fn status(&self) -> String {
        let bedrock = || {
            self.bedrock_state
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        match self.phase {
            BulkPhase::Collecting => "collecting".into(),
            BulkPhase::Running => bedrock().unwrap_or_else(|| "submitted".into()),
            BulkPhase::Settling => "settling".into(),
            BulkPhase::Settled => bedrock().unwrap_or_else(|| "completed".into()),
            BulkPhase::Refused => "refused".into(),
            BulkPhase::Cancelled => "cancelled".into(),
        }
    }

    /// Still needs the tracker.
    pub fn is_open(&self) -> bool {
        matches!(
            self.phase,
            BulkPhase::Collecting | BulkPhase::Running | BulkPhase::Settling
        )
    }

    /// Schedules the next status check: soon after a change, then doubling while nothing
    /// changes, up to `max_secs`.
    pub fn schedule_poll(&mut self, changed: bool, now_ms: i64, first_secs: u64, max_secs: u64) {
        self.idle_polls = if changed {
            0
        } else {
            self.idle_polls.saturating_add(1)
        };
        let wait = first_secs
            .saturating_mul(1u64 << self.idle_polls.min(16))
            .min(max_secs.max(first_secs));
        self.next_poll_ms = now_ms.saturating_add(i64::try_from(wait * 1000).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_while_nothing_changes_and_reset_on_change() {
        let mut job = BulkJob::new("t", "j", 0);
        job.schedule_poll(true, 0, 60, 900);
        assert_eq!(job.next_poll_ms, 60_000);
        let waits: Vec<i64> = (0..6)
            .map(|_| {
                job.schedule_poll(false, 0, 60, 900);
                job.next_poll_ms / 1000
            })
            .collect();
        assert_eq!(waits, [120, 240, 480, 900, 900, 900]);
        job.schedule_poll(true, 1000, 60, 900);
        assert_eq!(job.next_poll_ms, 61_000);
        // Never overflows however long a job idles.
        job.idle_polls = u32::MAX;
        job.schedule_poll(false, i64::MAX - 1, 60, 900);
        assert_eq!(job.next_poll_ms, i64::MAX);
    }

    #[test]
    fn status_names_follow_the_phase_then_bedrock() {
        let mut job = BulkJob::new("t", "j", 0);
        assert_eq!(job.status(), "collecting");
        job.phase = BulkPhase::Running;
        assert_eq!(job.status(), "submitted");
        job.bedrock_state = Some(BulkState::InProgress);
        assert_eq!(job.status(), "in_progress");
        job.phase = BulkPhase::Settling;
        assert_eq!(job.status(), "settling");
        job.bedrock_state = Some(BulkState::Completed);
        job.phase = BulkPhase::Settled;
        assert_eq!(job.status(), "completed");
        assert!(!job.is_open());
    }
}
