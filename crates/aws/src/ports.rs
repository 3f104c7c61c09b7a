//! The adapters of every Lambda, wired from one SDK configuration: [`ports_from_sdk`].
//!
//! ## Overview
//!
//! The four Lambdas run on overlapping sets of adapters: chat-handler and batch-worker on
//! almost all of them, cache-lookup on the parameters and the cache only, cost-alarm on the
//! parameters, the ledger, the budgets and the alerts topic. [`SdkPorts`] is the one place
//! that knows how each adapter is built (which table, queue or topic of [`Settings`] it
//! uses); each Lambda takes the adapters it needs and puts its own where it differs (a
//! no-op ledger, a model client that refuses, ...).
//!
//! Each adapter is built on first use, once: a Lambda builds no SDK client for a port it does
//! not use (nor needs the permission for it), and two users of one adapter share it (the
//! cache is also the idempotency store; Bedrock is both the model client and the guardrail
//! applier).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::SdkConfig;

use crate::Settings;
use crate::bedrock::BedrockModels;
use quarry_core::admission::BudgetAdmission;
use quarry_core::ports::{Clock, SystemClock};

use crate::audit::FirehoseAudit;
use crate::budgets::DynamoBudgets;
use crate::dynamo_cache::DynamoCache;
use crate::feedback::DynamoFeedback;
use crate::jobs::DynamoJobs;
use crate::knowledge::BedrockRetriever;
use crate::ledger::{DynamoLedger, LedgerReader};
use crate::sns::SnsNotifier;
use crate::ssm::SsmParams;

/// How long a tenant's budget state is cached in the warm process, unless the Lambda says.
pub const DEFAULT_BUDGET_MAX_AGE: Duration = Duration::from_secs(30);

/// The adapters of one SDK configuration and stage; see the module documentation.
pub struct SdkPorts {
    sdk: SdkConfig,
    settings: Settings,
    budget_max_age: Duration,
    /// Expiries, leases and budget-state ages are read from this clock.
    clock: Arc<dyn Clock>,
    params: OnceLock<Arc<SsmParams>>,
    bedrock: OnceLock<Arc<BedrockModels>>,
    cache: OnceLock<Arc<DynamoCache>>,
    admission: OnceLock<Arc<BudgetAdmission>>,
    ledger: OnceLock<Arc<DynamoLedger>>,
    jobs: OnceLock<Arc<DynamoJobs>>,
    ledger_reader: OnceLock<Arc<LedgerReader>>,
    budgets: OnceLock<Arc<DynamoBudgets>>,
    alerts: OnceLock<Arc<SnsNotifier>>,
    retriever: OnceLock<Arc<BedrockRetriever>>,
    audit: OnceLock<Arc<FirehoseAudit>>,
    feedback: OnceLock<Arc<DynamoFeedback>>,
}

/// The adapters of `settings`' stage on `sdk`.
pub fn ports_from_sdk(sdk: &SdkConfig, settings: &Settings) -> SdkPorts {
    SdkPorts {
        sdk: sdk.clone(),
        settings: settings.clone(),
        budget_max_age: DEFAULT_BUDGET_MAX_AGE,
        clock: Arc::new(SystemClock),
        params: OnceLock::new(),
        bedrock: OnceLock::new(),
        cache: OnceLock::new(),
        admission: OnceLock::new(),
        ledger: OnceLock::new(),
        jobs: OnceLock::new(),
        ledger_reader: OnceLock::new(),
        budgets: OnceLock::new(),
        alerts: OnceLock::new(),
        retriever: OnceLock::new(),
        audit: OnceLock::new(),
        feedback: OnceLock::new(),
    }
}

/// Retrieval's ports; `guardrail` is `ID:VERSION` (an unusable one is logged and left out:
/// prompts that need it then fail with a configuration error that says so).
pub fn retrieval_ports(
    retriever: Arc<BedrockRetriever>,
    cache: Arc<DynamoCache>,
    bedrock: Arc<BedrockModels>,
    guardrail: Option<&str>,
) -> quarry_core::retrieval::RetrievalPorts {
    let grounding_guardrail = guardrail.and_then(|g| {
        // The version is after the last ':' (an ARN has colons of its own).
        let (id, version) = match g.rsplit_once(':') {
            Some((id, v)) if v == "DRAFT" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) => (id, v),
            _ => (g, "DRAFT"),
        };
        serde_json::from_value(serde_json::json!({"id": id, "version": version}))
            .map_err(|e| tracing::error!(error = %e, guardrail = %g, "QUARRY_GROUNDING_GUARDRAIL is not a guardrail ID:VERSION; ignored"))
            .ok()
    });
    quarry_core::retrieval::RetrievalPorts {
        retriever,
        cache,
        grounding: bedrock,
        grounding_guardrail,
    }
}

fn once<T>(cell: &OnceLock<Arc<T>>, build: impl FnOnce() -> T) -> Arc<T> {
    cell.get_or_init(|| Arc::new(build())).clone()
}

impl SdkPorts {
    /// How long [`SdkPorts::admission`] caches a tenant's budget state (before its first use).
    pub fn with_budget_max_age(mut self, max_age: Duration) -> Self {
        self.budget_max_age = max_age;
        self
    }

    /// The clock of the adapters that keep time (before their first use): tests move it
    /// forward instead of sleeping.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn sdk(&self) -> &SdkConfig {
        &self.sdk
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Configuration, tenants and prompts: SSM Parameter Store.
    pub fn params(&self) -> Arc<SsmParams> {
        once(&self.params, || SsmParams::new(&self.sdk))
    }

    /// Bedrock Runtime: the model client and the guardrail applier.
    pub fn bedrock(&self) -> Arc<BedrockModels> {
        once(&self.bedrock, || BedrockModels::new(&self.sdk))
    }

    /// The audit trail: Firehose, with its spill queue.
    pub fn audit(&self) -> Arc<FirehoseAudit> {
        once(&self.audit, || {
            FirehoseAudit::new(
                &self.sdk,
                &self.settings.audit_stream,
                &self.settings.audit_spill_queue,
            )
        })
    }

    /// Ratings of answers, in the usage table beside the ledger markers they check.
    pub fn feedback(&self) -> Arc<DynamoFeedback> {
        once(&self.feedback, || {
            DynamoFeedback::new(&self.sdk, &self.settings.usage_table)
        })
    }

    /// Bedrock Agent Runtime's Retrieve.
    pub fn retriever(&self) -> Arc<BedrockRetriever> {
        once(&self.retriever, || BedrockRetriever::new(&self.sdk))
    }

    /// Retrieval: Retrieve, its cache (the response cache's table) and the grounding check
    /// (Bedrock's ApplyGuardrail).
    pub fn retrieval(&self) -> quarry_core::retrieval::RetrievalPorts {
        retrieval_ports(
            self.retriever(),
            self.cache(),
            self.bedrock(),
            self.settings.grounding_guardrail.as_deref(),
        )
    }

    /// The response cache table: the cache and the idempotency store.
    pub fn cache(&self) -> Arc<DynamoCache> {
        once(&self.cache, || {
            DynamoCache::with_clock(&self.sdk, &self.settings.cache_table, self.clock.clone())
        })
    }

    /// Budgets and rate limits, from the usage table.
    pub fn admission(&self) -> Arc<BudgetAdmission> {
        once(&self.admission, || {
            BudgetAdmission::new(self.budgets(), self.clock.clone(), self.budget_max_age)
        })
    }

    /// The usage ledger, spilling to its queue when the table fails.
    pub fn ledger(&self) -> Arc<DynamoLedger> {
        once(&self.ledger, || {
            DynamoLedger::new(
                &self.sdk,
                &self.settings.usage_table,
                &self.settings.spill_queue,
            )
        })
    }

    /// Batch jobs and their items (also the batch items' idempotency records).
    pub fn jobs(&self) -> Arc<DynamoJobs> {
        once(&self.jobs, || {
            DynamoJobs::with_clock(&self.sdk, &self.settings.jobs_table, self.clock.clone())
        })
    }

    /// Reading the ledger's totals.
    pub fn ledger_reader(&self) -> Arc<LedgerReader> {
        once(&self.ledger_reader, || {
            LedgerReader::new(&self.sdk, &self.settings.usage_table)
        })
    }

    /// Tenants' budget states and notices.
    pub fn budgets(&self) -> Arc<DynamoBudgets> {
        once(&self.budgets, || {
            DynamoBudgets::with_clock(&self.sdk, &self.settings.usage_table, self.clock.clone())
        })
    }

    /// Notifications for people: the alerts topic.
    pub fn alerts(&self) -> Arc<SnsNotifier> {
        once(&self.alerts, || {
            SnsNotifier::new(&self.sdk, &self.settings.alerts_topic)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_adapter_is_built_once_and_shared() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let ports = ports_from_sdk(&sdk, &Settings::for_stage("unit"));
        assert!(Arc::ptr_eq(&ports.cache(), &ports.cache()));
        assert!(Arc::ptr_eq(&ports.bedrock(), &ports.bedrock()));
        assert!(Arc::ptr_eq(&ports.ledger(), &ports.ledger()));
        assert!(
            ports.jobs.get().is_none(),
            "nothing built that was not asked for"
        );
    }
}
