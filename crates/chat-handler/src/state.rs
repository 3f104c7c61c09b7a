//! What a warm chat-handler holds: SDK clients, configuration caches, the invoker (with its
//! circuit breakers) and the limits. Built once per Lambda instance, shared by requests.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use quarry_aws::Settings;
use quarry_aws::bedrock::BedrockModels;
use quarry_aws::ssm::SsmParams;
use quarry_core::chat::Pipeline;
use quarry_core::config::Configs;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::ModelClient;
use quarry_core::params::ParameterStore;
use quarry_core::prompts::PromptStore;
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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_messages: 100,
            max_total_chars: 400_000,
            // API Gateway HTTP APIs stop waiting after 30 s.
            request_timeout: Duration::from_secs(28),
            deadline_margin: Duration::from_millis(1500),
            config_max_age: Duration::from_secs(60),
            auth: AuthMode::ApiKey,
            retry: RetryPolicy::default(),
        }
    }
}

impl Options {
    /// `QUARRY_MAX_BODY_BYTES`, `QUARRY_MAX_MESSAGES`, `QUARRY_MAX_TOTAL_CHARS`,
    /// `QUARRY_REQUEST_TIMEOUT_MS`, `QUARRY_CONFIG_MAX_AGE_SECS`, `QUARRY_AUTH_MODE`, ...
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let d = Self::default();
        let num = |key: &str, default: u64| -> Result<u64, String> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{key} must be a non-negative integer, not '{v}'")),
            }
        };
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
        })
    }
}

pub struct AppState {
    pub options: Options,
    pub settings: Settings,
    pub pipeline: Pipeline,
}

impl AppState {
    /// Production wiring: SSM for configuration and prompts, Bedrock for models.
    pub fn from_sdk(sdk: &SdkConfig, settings: Settings, options: Options) -> Self {
        let params: Arc<dyn ParameterStore> = Arc::new(SsmParams::new(sdk));
        let models: Arc<dyn ModelClient> = Arc::new(BedrockModels::new(sdk));
        Self::with_ports(params, models, settings, options)
    }

    /// Wiring from explicit ports (in-memory ones in unit tests and benchmarks).
    pub fn with_ports(
        params: Arc<dyn ParameterStore>,
        models: Arc<dyn ModelClient>,
        settings: Settings,
        options: Options,
    ) -> Self {
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
        Self {
            pipeline: Pipeline::new(configs, prompts, invoker),
            options,
            settings,
        }
    }
}
