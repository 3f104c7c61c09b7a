//! Which path an item takes, online or bulk: its job's plan, decided once (by a job header
//! message or `quarry batch submit`) and kept in the job's header. A warm worker reads it
//! once per job; a job without one is asked again after a few seconds, in case its header
//! arrives after its first items.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quarry_core::bulk::{JobMode, JobPlan};
use quarry_core::jobs::JobError;
use quarry_core::ports::BulkJobs;
use tokio::time::Instant;

use crate::message::BatchMessage;

/// How long "this job has no plan" is believed.
const UNKNOWN_FOR: Duration = Duration::from_secs(10);
/// Jobs remembered at most (the map is emptied when full).
const MAX_JOBS: usize = 4096;

/// Where an item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Online,
    Bulk,
    /// Its message asks for bulk and its job has no plan yet: open it as a bulk job.
    OpenBulk,
    /// Its message says `auto` and its job's header has not arrived: try again later.
    Wait,
}

type Key = (String, String);

pub struct Plans {
    store: Arc<dyn BulkJobs>,
    cached: Mutex<HashMap<Key, (Option<JobPlan>, Instant)>>,
}

impl Plans {
    pub fn new(store: Arc<dyn BulkJobs>) -> Self {
        Self {
            store,
            cached: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, key: Key, plan: Option<JobPlan>) {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.len() >= MAX_JOBS {
            cached.clear();
        }
        cached.insert(key, (plan, Instant::now()));
    }

    /// The job's plan, if it has one.
    pub async fn of(&self, tenant: &str, job_id: &str) -> Result<Option<JobPlan>, JobError> {
        let key = (tenant.to_owned(), job_id.to_owned());
        let hit = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|(plan, at)| plan.is_some() || at.elapsed() < UNKNOWN_FOR)
            .map(|(plan, _)| plan.clone());
        if let Some(plan) = hit {
            return Ok(plan);
        }
        let plan = self.store.plan(tenant, job_id).await?;
        self.remember(key, plan.clone());
        Ok(plan)
    }

    /// Records a plan (the first recorded stays); returns the plan in force.
    pub async fn open(
        &self,
        tenant: &str,
        job_id: &str,
        plan: &JobPlan,
    ) -> Result<JobPlan, JobError> {
        let in_force = self.store.open(tenant, job_id, plan).await?;
        self.remember(
            (tenant.to_owned(), job_id.to_owned()),
            Some(in_force.clone()),
        );
        Ok(in_force)
    }

    /// Where an item goes: `online` on the item wins (items Bedrock failed come back so);
    /// else its job's plan; a job without one runs online, unless the item asks for bulk
    /// (the job opens as bulk) or says `auto` (it waits for the header).
    pub async fn path(&self, message: &BatchMessage) -> Result<Path, JobError> {
        if message.mode == Some(JobMode::Online) {
            return Ok(Path::Online);
        }
        Ok(match self.of(&message.tenant, &message.job_id).await? {
            Some(plan) if plan.mode == JobMode::Bulk => Path::Bulk,
            Some(_) => Path::Online,
            None if message.mode == Some(JobMode::Bulk) => Path::OpenBulk,
            None if message.mode == Some(JobMode::Auto) => Path::Wait,
            None => Path::Online,
        })
    }
}
