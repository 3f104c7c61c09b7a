//! Batch faults: records that fail and jobs that fail or expire on demand, so callers can
//! rehearse Bedrock's partial results and failed jobs without a real outage.

use serde::{Deserialize, Serialize};

/// Faults of batch inference jobs. Job counters (`*_next_jobs`) are consumed as jobs start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchFaults {
    /// Records with these `recordId`s fail.
    pub fail_record_ids: Vec<String>,
    /// Every Nth record of a job fails (the Nth, the 2Nth, ...); 0 for none.
    pub fail_every: u32,
    /// `errorCode` of a failed record.
    pub record_error_code: u16,
    /// `errorMessage` of a failed record.
    pub record_error_message: String,
    /// The next N jobs fail after validation, with `job_failure_message`.
    pub fail_next_jobs: u32,
    pub job_failure_message: String,
    /// The next N jobs expire before they run.
    pub expire_next_jobs: u32,
}

impl Default for BatchFaults {
    fn default() -> Self {
        Self {
            fail_record_ids: Vec::new(),
            fail_every: 0,
            record_error_code: 400,
            record_error_message:
                "Malformed input request, please reformat your input and try again.".into(),
            fail_next_jobs: 0,
            job_failure_message: "An internal error occurred while processing the job.".into(),
            expire_next_jobs: 0,
        }
    }
}

/// What the faults decided for one job as it starts.
#[derive(Debug, Clone, Default)]
pub struct JobFaults {
    /// Fail the job with this message.
    pub fail: Option<String>,
    pub expire: bool,
    pub fail_record_ids: Vec<String>,
    pub fail_every: u32,
    pub record_error_code: u16,
    pub record_error_message: String,
}

impl JobFaults {
    /// The error of record `index` (0-based across the job), when it must fail.
    pub fn record_error(&self, record_id: &str, index: usize) -> Option<(u16, String)> {
        let every = self.fail_every as usize;
        let nth = every > 0 && (index + 1) % every == 0;
        (nth || self.fail_record_ids.iter().any(|id| id == record_id))
            .then(|| (self.record_error_code, self.record_error_message.clone()))
    }
}

impl BatchFaults {
    /// Decides the faults of a job that starts now, consuming the job counters.
    pub fn take(&mut self) -> JobFaults {
        let fail = (self.fail_next_jobs > 0).then(|| {
            self.fail_next_jobs -= 1;
            self.job_failure_message.clone()
        });
        let expire = fail.is_none() && self.expire_next_jobs > 0;
        if expire {
            self.expire_next_jobs -= 1;
        }
        JobFaults {
            fail,
            expire,
            fail_record_ids: self.fail_record_ids.clone(),
            fail_every: self.fail_every,
            record_error_code: self.record_error_code,
            record_error_message: self.record_error_message.clone(),
        }
    }

    /// Merges a partial update: fields set in `update` replace these.
    pub fn merge(&mut self, update: BatchFaultUpdate) {
        if let Some(v) = update.fail_record_ids {
            self.fail_record_ids = v;
        }
        if let Some(v) = update.fail_every {
            self.fail_every = v;
        }
        if let Some(v) = update.record_error_code {
            self.record_error_code = v;
        }
        if let Some(v) = update.record_error_message {
            self.record_error_message = v;
        }
        if let Some(v) = update.fail_next_jobs {
            self.fail_next_jobs = v;
        }
        if let Some(v) = update.job_failure_message {
            self.job_failure_message = v;
        }
        if let Some(v) = update.expire_next_jobs {
            self.expire_next_jobs = v;
        }
    }
}

/// A partial update from the admin API: absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFaultUpdate {
    pub fail_record_ids: Option<Vec<String>>,
    pub fail_every: Option<u32>,
    pub record_error_code: Option<u16>,
    pub record_error_message: Option<String>,
    pub fail_next_jobs: Option<u32>,
    pub job_failure_message: Option<String>,
    pub expire_next_jobs: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_and_named_records_fail() {
        let faults = BatchFaults {
            fail_every: 2,
            fail_record_ids: vec!["r9".into()],
            ..BatchFaults::default()
        }
        .clone()
        .take();
        assert!(faults.record_error("a", 0).is_none());
        assert_eq!(faults.record_error("b", 1).map(|e| e.0), Some(400));
        assert!(faults.record_error("r9", 2).is_some());
    }

    #[test]
    fn job_counters_are_consumed() {
        let mut faults = BatchFaults {
            fail_next_jobs: 1,
            expire_next_jobs: 1,
            ..BatchFaults::default()
        };
        assert!(faults.take().fail.is_some());
        let second = faults.take();
        assert!(second.fail.is_none() && second.expire);
        let third = faults.take();
        assert!(third.fail.is_none() && !third.expire);
    }
}
