//! What a warm chat-handler holds: SDK clients, configuration caches, the invoker (with its
//! circuit breakers), the limits. Built once per Lambda instance, shared by requests.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use quarry_aws::bedrock::BedrockModels;
use quarry_aws::image_fetch::{HttpImageFetcher, ImageFetchPolicy};
use quarry_aws::{Bootstrap, SdkPorts, Settings, ports_from_sdk};
use quarry_core::chat::Preparer;
use quarry_core::embeddings::{EmbeddingPorts, EmbeddingService};
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::ports::AdmissionControl;
use quarry_core::ports::EmbeddingCache;
use quarry_core::ports::GuardrailApplier;
use quarry_core::ports::ImageFetcher;
use quarry_core::ports::JobStore;
use quarry_core::ports::ModelClient;
use quarry_core::ports::ParameterStore;
use quarry_core::ports::UsageLedger;
use quarry_core::ports::{IdempotencyStore, ResponseCache};
use quarry_core::service::{ChatService, Ports, ServiceOptions};
use quarry_http::AuthMode;

/// Request limits and timing (from the environment, with defaults).
#[derive(Debug, Clone)]
pub struct Options {
    pub max_body_bytes: usize,
    pub max_messages: usize,
    pub max_total_chars: usize,
    /// Budget of a request when there is no Lambda deadline (local runs).
    pub request_timeout: Duration,
    /// Kept back from the Lambda deadline for the answer to leave.
    pub deadline_margin: Duration,
    /// How long routing, pricing, tenants and prompts are cached in the warm process.
    pub config_max_age: Duration,
    pub auth: AuthMode,
    pub retry: RetryPolicy,
    /// Cache lifetime when a prompt gives none.
    pub cache_ttl: Duration,
    /// How long an Idempotency-Key replays its first response.
    pub idempotency_window: Duration,
    /// Log request and answer text (debugging only; hashes otherwise).
    pub log_content: bool,
    /// How long a tenant's budget state is cached in the warm process.
    pub budget_max_age: Duration,
    /// The streaming Function URL: only the chat routes, and only streamed answers (whole
    /// answers, models and batches go through the HTTP API and its throttling).
    pub stream_only: bool,
    /// Where OpenAI `image_url` links may be fetched from (nowhere by default).
    pub image_fetch: ImageFetchPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            // Lambda's own limit on a synchronous request: room for images and documents
            // (text is bounded separately by max_total_chars).
            max_body_bytes: 6 * 1024 * 1024,
            max_messages: 100,
            max_total_chars: 400_000,
            // API Gateway HTTP APIs stop waiting after 30 s.
            request_timeout: Duration::from_secs(28),
            deadline_margin: Duration::from_millis(1500),
            config_max_age: Duration::from_secs(60),
            auth: AuthMode::ApiKey,
            retry: RetryPolicy::default(),
            cache_ttl: Duration::from_secs(3600),
            idempotency_window: Duration::from_secs(24 * 3600),
            log_content: false,
            budget_max_age: Duration::from_secs(30),
            stream_only: false,
            image_fetch: ImageFetchPolicy::default(),
        }
    }
}

impl Options {
    pub fn accept(&self) -> quarry_http::AcceptOptions {
        quarry_http::AcceptOptions {
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            deadline_margin: self.deadline_margin,
            auth: self.auth.clone(),
        }
    }

    pub fn limits(&self) -> quarry_http::native::Limits {
        quarry_http::native::Limits {
            max_messages: self.max_messages,
            max_total_chars: self.max_total_chars,
        }
    }

    /// `QUARRY_MAX_BODY_BYTES`, `QUARRY_MAX_MESSAGES`, `QUARRY_MAX_TOTAL_CHARS`,
    /// `QUARRY_REQUEST_TIMEOUT_MS`, `QUARRY_DEADLINE_MARGIN_MS`, `QUARRY_CONFIG_MAX_AGE_SECS`,
    /// `QUARRY_CACHE_TTL_SECS`, `QUARRY_IDEMPOTENCY_WINDOW_SECS`, `QUARRY_LOG_CONTENT`,
    /// `QUARRY_AUTH_MODE` (with `QUARRY_TENANT_CLAIM`, `QUARRY_ADMIN_CLAIM`),
    /// `QUARRY_RESPONSE_STREAMING` (the streaming Function URL: streamed chat only), and the
    /// image fetch's (`ImageFetchPolicy::from_lookup`: `QUARRY_IMAGE_URL_HOSTS`, ...).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let d = Self::default();
        let num = |key: &str, default: u64| quarry_aws::settings::env_u64(&get, key, default);
        Ok(Self {
            max_body_bytes: num("QUARRY_MAX_BODY_BYTES", d.max_body_bytes as u64)? as usize,
            max_messages: num("QUARRY_MAX_MESSAGES", d.max_messages as u64)? as usize,
            max_total_chars: num("QUARRY_MAX_TOTAL_CHARS", d.max_total_chars as u64)? as usize,
            request_timeout: Duration::from_millis(num(
                "QUARRY_REQUEST_TIMEOUT_MS",
                d.request_timeout.as_millis() as u64,
            )?),
            deadline_margin: Duration::from_millis(num(
                "QUARRY_DEADLINE_MARGIN_MS",
                d.deadline_margin.as_millis() as u64,
            )?),
            config_max_age: Duration::from_secs(num(
                "QUARRY_CONFIG_MAX_AGE_SECS",
                d.config_max_age.as_secs(),
            )?),
            auth: AuthMode::from_lookup(&get)?,
            retry: d.retry,
            cache_ttl: Duration::from_secs(num("QUARRY_CACHE_TTL_SECS", d.cache_ttl.as_secs())?),
            idempotency_window: Duration::from_secs(num(
                "QUARRY_IDEMPOTENCY_WINDOW_SECS",
                d.idempotency_window.as_secs(),
            )?),
            log_content: get("QUARRY_LOG_CONTENT").is_some_and(|v| v == "true" || v == "1"),
            budget_max_age: Duration::from_secs(num(
                "QUARRY_BUDGET_MAX_AGE_SECS",
                d.budget_max_age.as_secs(),
            )?),
            stream_only: get("QUARRY_RESPONSE_STREAMING").is_some_and(|v| v == "true"),
            image_fetch: ImageFetchPolicy::from_lookup(&get)?,
        })
    }
}

/// The ports a chat-handler runs on.
pub struct HandlerPorts {
    pub params: Arc<dyn ParameterStore>,
    pub models: Arc<dyn ModelClient>,
    pub cache: Arc<dyn ResponseCache>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub admission: Arc<dyn AdmissionControl>,
    pub ledger: Arc<dyn UsageLedger>,
    pub applier: Arc<dyn GuardrailApplier>,
    pub jobs: Arc<dyn JobStore>,
    /// Batch jobs' plans and bulk tracking records, for their status.
    pub bulk_jobs: Arc<dyn quarry_core::ports::BulkJobs>,
    pub embeddings: Arc<dyn EmbeddingCache>,
    pub retrieval: quarry_core::retrieval::RetrievalPorts,
    pub audit: Arc<dyn quarry_core::ports::AuditTrail>,
    pub feedback: Arc<dyn quarry_core::ports::FeedbackStore>,
}

pub struct AppState {
    pub options: Options,
    pub settings: Settings,
    pub service: ChatService,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Batch jobs, for their status.
    pub jobs: Arc<dyn JobStore>,
    pub bulk_jobs: Arc<dyn quarry_core::ports::BulkJobs>,
    /// Flushes metrics at the end of a request when the runtime does not (streaming).
    pub flush_metrics: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Fetches linked images, when the deployment allows it.
    pub images: Option<Arc<dyn ImageFetcher>>,
    pub embeddings: EmbeddingService,
    /// Ratings of answers (`/v1/feedback`).
    pub feedback: Arc<dyn quarry_core::ports::FeedbackStore>,
}

impl HandlerPorts {
    /// The adapters of the shared bundle this handler runs on: all of them, Bedrock as both
    /// the model client and the guardrail applier, the cache as the idempotency store too.
    pub fn from_sdk_ports(ports: &SdkPorts) -> Self {
        let bedrock = ports.bedrock();
        let cache = ports.cache();
        Self {
            params: ports.params(),
            models: bedrock.clone(),
            cache: cache.clone(),
            idempotency: cache.clone(),
            admission: ports.admission(),
            ledger: ports.ledger(),
            applier: bedrock,
            jobs: ports.jobs(),
            bulk_jobs: ports.jobs(),
            embeddings: cache,
            retrieval: ports.retrieval(),
            audit: ports.audit(),
            feedback: ports.feedback(),
        }
    }
}

impl AppState {
    /// Production wiring: SSM, Bedrock, DynamoDB.
    pub fn from_sdk(sdk: &SdkConfig, settings: Settings, options: Options) -> Self {
        let ports = HandlerPorts::from_sdk_ports(&Self::sdk_ports(sdk, &settings, &options));
        Self::with_ports(ports, settings, options)
    }

    /// Production wiring with Bedrock reached through its own configuration (an operator's
    /// tool pointing at a local AWS and another Bedrock endpoint).
    pub fn from_sdks(
        sdk: &SdkConfig,
        bedrock: &SdkConfig,
        settings: Settings,
        options: Options,
    ) -> Self {
        let sdk_ports = Self::sdk_ports(sdk, &settings, &options);
        let retriever = Arc::new(quarry_aws::knowledge::BedrockRetriever::new(bedrock));
        let bedrock = Arc::new(BedrockModels::new(bedrock));
        let ports = HandlerPorts {
            models: bedrock.clone(),
            applier: bedrock.clone(),
            retrieval: quarry_aws::ports::retrieval_ports(
                retriever,
                sdk_ports.cache(),
                bedrock,
                settings.grounding_guardrail.as_deref(),
            ),
            ..HandlerPorts::from_sdk_ports(&sdk_ports)
        };
        Self::with_ports(ports, settings, options)
    }

    /// The Lambda's wiring: production ports, and metrics flushed at the end of each request.
    pub fn from_bootstrap(boot: &Bootstrap, options: Options) -> Self {
        let mut state = Self::from_sdk(&boot.sdk, boot.settings.clone(), options);
        state.flush_metrics = boot.metrics.is_installed().then(|| boot.metrics.flush_fn());
        state
    }

    fn sdk_ports(sdk: &SdkConfig, settings: &Settings, options: &Options) -> SdkPorts {
        ports_from_sdk(sdk, settings).with_budget_max_age(options.budget_max_age)
    }

    /// Wiring from explicit ports (in-memory ones in benchmarks).
    pub fn with_ports(ports: HandlerPorts, settings: Settings, options: Options) -> Self {
        let preparer =
            Preparer::from_params(ports.params, &settings.param_prefix, options.config_max_age);
        let embeddings = EmbeddingService::new(
            EmbeddingPorts {
                configs: preparer.configs().clone(),
                client: ports.models.clone(),
                cache: ports.embeddings,
                admission: ports.admission.clone(),
                ledger: ports.ledger.clone(),
            },
            options.retry.clone(),
            options.cache_ttl,
        );
        let invoker = Arc::new(Invoker::new(ports.models, options.retry.clone()));
        let service = ChatService::new(
            Ports {
                preparer,
                invoker,
                cache: ports.cache,
                admission: ports.admission,
                ledger: ports.ledger,
                applier: ports.applier,
                retrieval: ports.retrieval,
                audit: ports.audit,
            },
            ServiceOptions {
                default_cache_ttl: options.cache_ttl,
                log_content: options.log_content,
            },
        );
        let images = options.image_fetch.enabled().then(|| {
            Arc::new(HttpImageFetcher::new(options.image_fetch.clone())) as Arc<dyn ImageFetcher>
        });
        Self {
            options,
            settings,
            service,
            idempotency: ports.idempotency,
            feedback: ports.feedback,
            jobs: ports.jobs,
            bulk_jobs: ports.bulk_jobs,
            flush_metrics: None,
            images,
            embeddings,
        }
    }
}
