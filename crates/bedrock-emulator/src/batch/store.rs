//! The batch inference jobs the emulator knows, in memory: their status, times and record
//! counts, the idempotency tokens that name them, and the faults that shape them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::{Map, Value, json};

use super::faults::{BatchFaults, JobFaults};
use crate::generate::Prng;

/// A poisoned lock only means a job task panicked mid-update; the table is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bedrock's `ModelInvocationJobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
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

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Submitted,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
        Status::Stopping,
        Status::Stopped,
        Status::PartiallyCompleted,
        Status::Expired,
        Status::Validating,
        Status::Scheduled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "Submitted",
            Self::Validating => "Validating",
            Self::Scheduled => "Scheduled",
            Self::InProgress => "InProgress",
            Self::Completed => "Completed",
            Self::PartiallyCompleted => "PartiallyCompleted",
            Self::Failed => "Failed",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Expired => "Expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A job in a final status never changes again.
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
}

/// Record and token counts, known once the input has been read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub processed: u64,
    pub success: u64,
    pub error: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    /// Creation order, which breaks ties between jobs submitted in the same millisecond.
    pub seq: u64,
    pub arn: String,
    pub name: String,
    /// As the request named it.
    pub model_id: String,
    pub role_arn: String,
    pub client_request_token: Option<String>,
    /// Echoed as sent.
    pub input_data_config: Value,
    pub output_data_config: Value,
    pub vpc_config: Option<Value>,
    pub input_uri: String,
    pub output_uri: String,
    pub timeout_hours: u32,
    pub status: Status,
    pub message: Option<String>,
    pub submit_time: SystemTime,
    pub last_modified: SystemTime,
    pub end_time: Option<SystemTime>,
    pub counts: Option<Counts>,
    pub stop_requested: bool,
}

/// Now, to the millisecond: Bedrock's times have no finer precision, and a time a caller
/// read back from a job (to filter a listing by it) must compare equal to the job's own.
pub fn now() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

fn timestamp(t: SystemTime) -> Value {
    DateTime::from(t)
        .fmt(Format::DateTime)
        .map_or(Value::Null, Value::String)
}

impl Job {
    pub fn expiration_time(&self) -> SystemTime {
        self.submit_time + Duration::from_secs(u64::from(self.timeout_hours) * 3600)
    }

    /// GetModelInvocationJob's answer, also a ListModelInvocationJobs summary.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("jobArn".into(), json!(self.arn));
        body.insert("jobName".into(), json!(self.name));
        body.insert("modelId".into(), json!(self.model_id));
        if let Some(token) = &self.client_request_token {
            body.insert("clientRequestToken".into(), json!(token));
        }
        body.insert("roleArn".into(), json!(self.role_arn));
        body.insert("status".into(), json!(self.status.as_str()));
        if let Some(message) = &self.message {
            body.insert("message".into(), json!(message));
        }
        body.insert("submitTime".into(), timestamp(self.submit_time));
        body.insert("lastModifiedTime".into(), timestamp(self.last_modified));
        if let Some(end) = self.end_time {
            body.insert("endTime".into(), timestamp(end));
        }
        body.insert("inputDataConfig".into(), self.input_data_config.clone());
        body.insert("outputDataConfig".into(), self.output_data_config.clone());
        if let Some(vpc) = &self.vpc_config {
            body.insert("vpcConfig".into(), vpc.clone());
        }
        body.insert("timeoutDurationInHours".into(), json!(self.timeout_hours));
        body.insert(
            "jobExpirationTime".into(),
            timestamp(self.expiration_time()),
        );
        body.insert("modelInvocationType".into(), json!("InvokeModel"));
        if let Some(c) = self.counts {
            body.insert("totalRecordCount".into(), json!(c.total));
            body.insert("processedRecordCount".into(), json!(c.processed));
            body.insert("successRecordCount".into(), json!(c.success));
            body.insert("errorRecordCount".into(), json!(c.error));
        }
        Value::Object(body)
    }
}

#[derive(Default)]
struct Table {
    jobs: BTreeMap<String, Job>,
    tokens: HashMap<String, String>,
}

/// Every job, by ID. Tasks running a job write to it through `update`, which tells them
/// when the job is gone (the admin reset forgets jobs).
pub struct JobStore {
    table: Mutex<Table>,
    faults: Mutex<BatchFaults>,
    seq: AtomicU64,
    seed: u64,
    pub http: reqwest::Client,
}

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

impl JobStore {
    pub fn new(faults: BatchFaults, seed: u64) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            faults: Mutex::new(faults),
            seq: AtomicU64::new(0),
            // Job IDs name output folders: two emulators (or two runs) writing to one bucket
            // must not reuse each other's, so the clock joins the configured seed.
            seed: seed
                ^ SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            // A stalled S3 would otherwise hold a job in its phase for ever.
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    /// A fresh job ID (twelve lowercase letters or digits, as Bedrock's) and its creation
    /// sequence number.
    pub fn new_id(&self) -> (u64, String) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut rng = Prng::new(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let id = (0..12)
            .map(|_| char::from(ID_ALPHABET[(rng.next_u64() % 36) as usize]))
            .collect();
        (n, id)
    }

    /// Adds `job` unless its token already names a job; returns the job that stands.
    pub fn insert(&self, job: Job) -> Job {
        let mut table = lock(&self.table);
        if let Some(existing) = job
            .client_request_token
            .as_ref()
            .and_then(|t| table.tokens.get(t))
            .and_then(|id| table.jobs.get(id))
        {
            return existing.clone();
        }
        if let Some(token) = &job.client_request_token {
            table.tokens.insert(token.clone(), job.id.clone());
        }
        table.jobs.insert(job.id.clone(), job.clone());
        job
    }

    pub fn by_token(&self, token: &str) -> Option<Job> {
        let table = lock(&self.table);
        table
            .tokens
            .get(token)
            .and_then(|id| table.jobs.get(id))
            .cloned()
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        lock(&self.table).jobs.get(id).cloned()
    }

    pub fn all(&self) -> Vec<Job> {
        lock(&self.table).jobs.values().cloned().collect()
    }

    /// Applies `f` to the job; `None` when the job no longer exists.
    pub fn update<R>(&self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        let mut table = lock(&self.table);
        let job = table.jobs.get_mut(id)?;
        let result = f(job);
        job.last_modified = now();
        Some(result)
    }

    pub fn take_faults(&self) -> JobFaults {
        lock(&self.faults).take()
    }

    pub fn faults(&self) -> BatchFaults {
        lock(&self.faults).clone()
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut BatchFaults)) {
        f(&mut lock(&self.faults));
    }

    /// Forgets every job; faults go back to `configured`.
    pub fn reset(&self, configured: BatchFaults) {
        *lock(&self.table) = Table::default();
        *lock(&self.faults) = configured;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_lowercase_letters_or_digits_and_differ() {
        let store = JobStore::new(BatchFaults::default(), 1);
        let (first, a) = store.new_id();
        let (second, b) = store.new_id();
        assert!(first < second);
        assert_eq!(a.len(), 12);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("Done"), None);
    }
}
