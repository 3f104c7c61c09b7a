//! The worker: each message through the shared chat pipeline.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use quarry_aws::Settings;
use quarry_aws::bedrock::BedrockModels;
use quarry_aws::ssm::SsmParams;
use quarry_core::admission::AdmitAll;
use quarry_core::cache::NoCache;
use quarry_core::chat::Preparer;
use quarry_core::config::Configs;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::ModelClient;
use quarry_core::params::ParameterStore;
use quarry_core::prompts::PromptStore;
use quarry_core::service::{
    AnswerRequest, CacheMode, ChatService, NoApplier, Ports, ServiceOptions,
};
use quarry_core::usage::NoLedger;
use tokio::time::Instant;

use crate::message;
use crate::partial::{Disposition, process_batch};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Items of one batch in flight at once.
    pub concurrency: usize,
    /// Kept back from the Lambda deadline.
    pub deadline_margin: Duration,
    pub config_max_age: Duration,
    pub retry: RetryPolicy,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            deadline_margin: Duration::from_secs(3),
            config_max_age: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

impl WorkerOptions {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let d = Self::default();
        let num = |key: &str, default: u64| quarry_aws::settings::env_u64(&get, key, default);
        Ok(Self {
            concurrency: num("QUARRY_BATCH_CONCURRENCY", d.concurrency as u64)?.max(1) as usize,
            deadline_margin: Duration::from_millis(num(
                "QUARRY_DEADLINE_MARGIN_MS",
                d.deadline_margin.as_millis() as u64,
            )?),
            config_max_age: Duration::from_secs(num(
                "QUARRY_CONFIG_MAX_AGE_SECS",
                d.config_max_age.as_secs(),
            )?),
            retry: d.retry,
        })
    }
}

pub struct Worker {
    options: WorkerOptions,
    service: ChatService,
}

impl Worker {
    pub fn from_sdk(sdk: &SdkConfig, settings: &Settings, options: WorkerOptions) -> Self {
        let params: Arc<dyn ParameterStore> = Arc::new(SsmParams::new(sdk));
        let models: Arc<dyn ModelClient> = Arc::new(BedrockModels::new(sdk));
        let configs = Arc::new(Configs::new(
            params.clone(),
            &settings.param_prefix,
            options.config_max_age,
        ));
        let prompts = Arc::new(PromptStore::new(
            params,
            &settings.param_prefix,
            options.config_max_age,
        ));
        let invoker = Arc::new(Invoker::new(models, options.retry.clone()));
        let service = ChatService::new(
            Ports {
                preparer: Preparer::new(configs, prompts),
                invoker,
                cache: Arc::new(NoCache),
                admission: Arc::new(AdmitAll),
                ledger: Arc::new(NoLedger),
                applier: Arc::new(NoApplier),
            },
            ServiceOptions::default(),
        );
        Self { service, options }
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.options
    }

    /// Handles one SQS batch; `deadline` is the Lambda's, before the margin.
    pub async fn handle(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let deadline = deadline
            .checked_sub(self.options.deadline_margin)
            .unwrap_or_else(Instant::now);
        process_batch(event, self.options.concurrency, |m| self.item(m, deadline)).await
    }

    async fn item(&self, m: SqsMessage, deadline: Instant) -> Disposition {
        let body = m.body.unwrap_or_default();
        let msg = match message::parse(&body) {
            Ok(msg) => msg,
            Err(invalid) => {
                tracing::warn!(reason = %invalid.reason, ids = ?invalid.ids, "poison message acknowledged");
                return Disposition::Ack;
            }
        };
        let (job, item) = (msg.job_id.clone(), msg.item_id.clone());
        let directory = match self.service.configs().tenants().await {
            Ok(d) => d,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let caller = match directory.caller(&msg.tenant, false, Some("batch".into())) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(job = %job, item = %item, reason = %e, "poison message acknowledged");
                return Disposition::Ack;
            }
        };
        let request = AnswerRequest {
            id: format!("{job}/{item}"),
            input: msg.into_input(),
            cache: CacheMode::Bypass,
            deadline,
        };
        match self.service.answer(&caller, request).await {
            Ok(answer) => {
                tracing::info!(job = %job, item = %item, model = %answer.model, "item succeeded");
                Disposition::Ack
            }
            Err(e) if e.is_retryable() => Disposition::Retry(e.to_string()),
            Err(e) => {
                tracing::warn!(job = %job, item = %item, reason = %e, "item failed for good");
                Disposition::Ack
            }
        }
    }
}
