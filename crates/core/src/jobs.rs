//! Batch jobs: one header per job (counts, cost) and one record per item, which is also the
//! idempotency record that makes at-least-once delivery safe.
//!
//! An item is claimed before it runs, under a lease: a second delivery of a finished item
//! is acknowledged without a model call; one of an item running under a live lease waits
//! for redelivery; one whose lease expired (its invocation crashed) runs again.

use serde::{Deserialize, Serialize};

use crate::model::TokenUsage;
use crate::pricing::MicroUsd;

/// A batch message refused before anything was written under the tenant it names: not
/// readable, not valid, naming an unknown tenant, or sent by a producer that may not speak
/// for it. Kept for the operator (`quarry batch quarantine`), never in a tenant's job, so
/// the tenant's own later message for the same item still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The SQS message ID.
    pub message_id: String,
    /// The SQS `SenderId` (who sent it), when known.
    pub sender: Option<String>,
    pub reason: String,
    /// What the message claimed to be (`tenant/job/item`), if that could be read. Claimed,
    /// not established.
    pub claimed: Option<String>,
    /// The body as received, cut to [`QUARANTINE_BODY_BYTES`] at a character boundary.
    pub body: String,
    pub at_ms: i64,
}

/// How much of a quarantined body is kept (an SQS message is at most 256 KiB; a DynamoDB
/// item at most 400 KB).
pub const QUARANTINE_BODY_BYTES: usize = 64 * 1024;

impl Quarantined {
    pub fn new(
        message_id: &str,
        sender: Option<&str>,
        reason: &str,
        claimed: Option<String>,
        body: &str,
        at_ms: i64,
    ) -> Self {
        let mut cut = body.len().min(QUARANTINE_BODY_BYTES);
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        Self {
            message_id: message_id.chars().take(128).collect(),
            sender: sender.map(|s| s.chars().take(256).collect()),
            reason: reason.chars().take(1024).collect(),
            claimed,
            body: body[..cut].to_owned(),
            at_ms,
        }
    }
}

/// A job or item ID: 1 to 128 of `A-Z a-z 0-9 - _ . :`. IDs are part of storage keys
/// (`JOB#{tenant}#{job}`, `ITEM#{item}`), so no ID may hold their separator.
pub fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    /// Failed for now; the next delivery runs it again.
    Retry,
    Succeeded,
    Failed,
    /// Handed to Bedrock batch inference: its result comes with its bulk job's.
    Bulk,
}

/// Which item: jobs are scoped to their tenant by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemRef {
    pub tenant: String,
    pub job_id: String,
    pub item_id: String,
}

/// The outcome of claiming an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemClaim {
    /// Run it (`attempt` counts from 1).
    Run { attempt: u32 },
    /// Already succeeded or failed for good: acknowledge, do nothing.
    Done(ItemStatus),
    /// Running elsewhere under a live lease: leave it for redelivery.
    Busy,
}

/// What a succeeded item produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    pub usage: TokenUsage,
    pub cost: Option<MicroUsd>,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Answered from the response cache (no model call, no cost).
    #[serde(default)]
    pub cached: bool,
    /// The service tier Bedrock says served the item (its price is that tier's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<crate::model::ServiceTier>,
}

/// An item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub item_id: String,
    pub status: ItemStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ItemResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The stored output was cut to fit DynamoDB's item limit.
    #[serde(default)]
    pub truncated: bool,
    /// The item's message, kept while it may have to be sent again: a failure its cause can
    /// fix (a budget; `quarry batch retry` sends it again), or an item waiting in a bulk job
    /// (rendered at submission; sent online if Bedrock fails it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_body: Option<String>,
}

/// A job's header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobCounts {
    pub submitted: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Items the submitter announced (`quarry batch submit` does), if known.
    pub expected: Option<u64>,
    pub cost: MicroUsd,
}

impl JobCounts {
    pub fn in_flight(&self) -> u64 {
        self.submitted.saturating_sub(self.succeeded + self.failed)
    }

    /// Every announced item has an outcome.
    pub fn finished(&self) -> bool {
        self.expected
            .is_some_and(|e| e > 0 && self.succeeded + self.failed >= e)
    }

    /// Where the job stands: `queued` before any item started, `done` when every item (the
    /// announced count, else every item started) has an outcome, `running` in between.
    pub fn state(&self) -> JobState {
        let outcomes = self.succeeded + self.failed;
        match self.expected {
            _ if self.submitted == 0 && outcomes == 0 => JobState::Queued,
            Some(e) if e > 0 && outcomes >= e => JobState::Done,
            Some(_) => JobState::Running,
            None if self.in_flight() == 0 => JobState::Done,
            None => JobState::Running,
        }
    }
}

/// Where a batch job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The item's lease was taken over (this invocation ran past it).
    #[error("lost the lease on {0}")]
    LeaseLost(String),
    #[error("{0}")]
    Store(#[from] crate::ports::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_queued_running_then_done() {
        let counts = |submitted, succeeded, failed, expected| JobCounts {
            submitted,
            succeeded,
            failed,
            expected,
            cost: MicroUsd::ZERO,
        };
        assert_eq!(counts(0, 0, 0, Some(3)).state(), JobState::Queued);
        assert_eq!(counts(2, 1, 0, Some(3)).state(), JobState::Running);
        // Every started item finished, but one announced item never started.
        assert_eq!(counts(2, 1, 1, Some(3)).state(), JobState::Running);
        assert_eq!(counts(3, 2, 1, Some(3)).state(), JobState::Done);
        assert_eq!(counts(2, 2, 0, None).state(), JobState::Done);
        assert_eq!(counts(2, 1, 0, None).state(), JobState::Running);
    }
}
