//! cache-lookup: the response cache's own API. It answers from the cache only: its chat
//! service has no model client (and its role no Bedrock permission), so a lookup can never
//! cause a model call.
//!
//! * `POST /v1/cache/lookup`: the body of `/v1/chat` -> the cached response, or 404;
//! * `DELETE /v1/cache?prompt=P&tenant=T`: purge (admin keys only; `tenant` defaults to
//!   the key's own);
//! * `GET /v1/cache/stats`: the caller's entries, by prompt.
//!
//! Every error, including an unknown route or another method on a known one, is the JSON
//! envelope (see `quarry_http`); handlers only run for a known caller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{delete, get, post};
use http::Method;
use quarry_aws::bootstrap::Metrics;
use quarry_aws::dynamo_cache::DynamoCache;
use quarry_aws::{Bootstrap, SdkPorts, Settings, ports_from_sdk};
use quarry_core::Error;
use quarry_core::admission::AdmitAll;
use quarry_core::chat::Preparer;
use quarry_core::config::Configs;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::{ModelError, ModelErrorKind, ModelRequest, ModelResponse, ModelStream};
use quarry_core::ports::ModelClient;
use quarry_core::ports::ParameterStore;
use quarry_core::pricing::MicroUsd;
use quarry_core::service::{ChatService, NoApplier, Ports, ServiceOptions};
use quarry_core::usage::NoLedger;
use quarry_http::native::{ChatRequest, ChatResponse, Limits};
use quarry_http::routes::{Route, router};
use quarry_http::{
    AcceptOptions, ApiError, ApiState, AuthMode, Caller, JsonBody, RequestMeta, Timing,
    WithEnvelope, parse_json,
};
use serde::{Deserialize, Serialize};

/// The model port of a Lambda that must never call a model.
pub struct NoModels;

#[async_trait]
impl ModelClient for NoModels {
    async fn converse(
        &self,
        _: &str,
        _: &ModelRequest,
        _: Duration,
    ) -> Result<ModelResponse, ModelError> {
        Err(ModelError::new(
            ModelErrorKind::AccessDenied,
            "cache-lookup never calls a model",
        ))
    }
    async fn converse_stream(
        &self,
        _: &str,
        _: &ModelRequest,
        _: Duration,
    ) -> Result<ModelStream, ModelError> {
        Err(ModelError::new(
            ModelErrorKind::AccessDenied,
            "cache-lookup never calls a model",
        ))
    }
}

#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub accept: AcceptOptions,
    pub limits: Limits,
    pub config_max_age: Duration,
}

impl CacheOptions {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let num = |key: &str, default: u64| quarry_aws::settings::env_u64(&get, key, default);
        Ok(Self {
            accept: AcceptOptions {
                max_body_bytes: num("QUARRY_MAX_BODY_BYTES", 6 * 1024 * 1024)? as usize,
                request_timeout: Duration::from_millis(num("QUARRY_REQUEST_TIMEOUT_MS", 10_000)?),
                deadline_margin: Duration::from_millis(num("QUARRY_DEADLINE_MARGIN_MS", 500)?),
                auth: AuthMode::from_lookup(&get)?,
            },
            limits: Limits {
                max_messages: num("QUARRY_MAX_MESSAGES", 100)? as usize,
                max_total_chars: num("QUARRY_MAX_TOTAL_CHARS", 400_000)? as usize,
            },
            config_max_age: Duration::from_secs(num("QUARRY_CONFIG_MAX_AGE_SECS", 60)?),
        })
    }
}

pub struct CacheState {
    pub options: CacheOptions,
    pub service: ChatService,
    pub store: DynamoCache,
    /// Flushed after each response.
    pub metrics: Metrics,
}

impl CacheState {
    pub fn from_sdk(sdk: &SdkConfig, settings: &Settings, options: CacheOptions) -> Self {
        Self::from_sdk_ports(&ports_from_sdk(sdk, settings), options)
    }

    /// The Lambda's wiring: production ports, and metrics flushed after each response.
    pub fn from_bootstrap(boot: &Bootstrap, options: CacheOptions) -> Self {
        Self {
            metrics: boot.metrics.clone(),
            ..Self::from_sdk(&boot.sdk, &boot.settings, options)
        }
    }

    /// Of the shared bundle, only the parameters and the cache: this Lambda's chat service
    /// refuses to call a model, admits everything (a lookup costs nothing) and records no
    /// usage.
    pub fn from_sdk_ports(ports: &SdkPorts, options: CacheOptions) -> Self {
        let params: Arc<dyn ParameterStore> = ports.params();
        let store = ports.cache();
        let preparer = Preparer::from_params(
            params,
            &ports.settings().param_prefix,
            options.config_max_age,
        );
        let service = ChatService::new(
            Ports {
                preparer,
                invoker: Arc::new(Invoker::new(Arc::new(NoModels), RetryPolicy::default())),
                cache: store.clone(),
                admission: Arc::new(AdmitAll),
                ledger: Arc::new(NoLedger),
                // Lookups are not recorded: the answer's own request was.
                audit: Arc::new(quarry_core::ports::NoAudit),
                applier: Arc::new(NoApplier),
                // Cached retrievals only: this function never calls a Knowledge Base.
                retrieval: quarry_core::retrieval::RetrievalPorts {
                    cache: store.clone(),
                    ..Default::default()
                },
            },
            ServiceOptions::default(),
        );
        Self {
            options,
            service,
            store: (*store).clone(),
            metrics: Metrics::disabled(),
        }
    }
}

type Shared = Arc<CacheState>;

impl ApiState for CacheState {
    fn auth(&self) -> &AuthMode {
        &self.options.accept.auth
    }

    fn timing(&self) -> Timing {
        self.options.accept.timing()
    }

    fn max_body_bytes(&self) -> usize {
        self.options.accept.max_body_bytes
    }

    fn configs(&self) -> &Configs {
        self.service.configs()
    }
}

/// Every route of the cache API. template.yaml declares exactly these (a test checks it).
pub fn routes() -> Vec<Route<Shared>> {
    vec![
        (Method::POST, "/v1/cache/lookup", post(lookup)),
        (Method::DELETE, "/v1/cache", delete(purge)),
        (Method::GET, "/v1/cache/stats", get(stats)),
    ]
}

/// The cache API's router.
pub fn app(state: Arc<CacheState>) -> Router {
    let metrics = state.metrics.clone();
    router(routes())
        .with_state(state)
        .layer(axum::middleware::map_response(
            move |response: axum::response::Response| {
                // The answer is whole here (no route of this API streams): its metrics are
                // complete, and Lambda may freeze the process once it is sent.
                metrics.flush();
                std::future::ready(response)
            },
        ))
}

async fn lookup(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<ChatResponse>, ApiError> {
    let found = async {
        let request: ChatRequest = parse_json(&body)?;
        let (input, _, _) = request.into_input(&state.options.limits)?;
        state.service.lookup(&caller, input).await
    }
    .await
    .map_err(|e| ApiError::new(e, &meta.request_id))?;
    match found {
        Some(answer) => Ok(Json(quarry_http::native::response(
            &meta.request_id,
            &answer,
            meta.elapsed_ms(),
        ))),
        None => Err(ApiError::new(
            Error::NotFound("no cached answer for this request".into()),
            &meta.request_id,
        )),
    }
}

#[derive(Debug, Deserialize)]
struct PurgeQuery {
    prompt: Option<String>,
    tenant: Option<String>,
}

#[derive(Debug, Serialize)]
struct Purged {
    tenant: String,
    prompt: Option<String>,
    deleted: usize,
}

#[derive(Debug, Serialize)]
struct Stats {
    tenant: String,
    entries: u64,
    /// Entries per prompt (`-`: requests without a prompt).
    by_prompt: BTreeMap<String, u64>,
    hits: u64,
    misses: u64,
    /// Hits over lookups; `null` before any lookup.
    hit_rate: Option<f64>,
    /// What the hits would have cost.
    saved_usd: String,
    /// The same, per prompt.
    prompts: BTreeMap<String, PromptStatsOut>,
}

#[derive(Debug, Serialize)]
struct PromptStatsOut {
    entries: u64,
    hits: u64,
    misses: u64,
    hit_rate: Option<f64>,
    saved_usd: String,
}

fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let lookups = hits + misses;
    (lookups > 0).then(|| (hits as f64 / lookups as f64 * 1000.0).round() / 1000.0)
}

async fn purge(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
    WithEnvelope(Query(q)): WithEnvelope<Query<PurgeQuery>>,
) -> Result<Json<Purged>, ApiError> {
    let refuse = |e: Error| ApiError::new(e, &meta.request_id);
    let tenant = q.tenant.unwrap_or_else(|| caller.tenant.clone());
    if !caller.may_administer(&tenant) {
        return Err(refuse(Error::Forbidden(if caller.admin {
            format!(
                "an admin key administers its own tenant ('{}') only; purging tenant '{tenant}' needs an operator credential",
                caller.tenant
            )
        } else {
            "purging the cache needs an admin key".into()
        })));
    }
    let deleted = state
        .store
        .purge(&tenant, q.prompt.as_deref())
        .await
        .map_err(|e| refuse(Error::from(e)))?;
    tracing::info!(%tenant, prompt = q.prompt.as_deref(), deleted, "cache purged");
    Ok(Json(Purged {
        tenant,
        prompt: q.prompt,
        deleted,
    }))
}

async fn stats(
    State(state): State<Shared>,
    meta: RequestMeta,
    Caller(caller): Caller,
) -> Result<Json<Stats>, ApiError> {
    let stats = state
        .store
        .stats(&caller.tenant)
        .await
        .map_err(|e| ApiError::new(Error::from(e), &meta.request_id))?;
    let (hits, misses) = (
        stats.values().map(|p| p.hits).sum::<u64>(),
        stats.values().map(|p| p.misses).sum::<u64>(),
    );
    let saved = MicroUsd(stats.values().map(|p| p.saved_micro).sum());
    Ok(Json(Stats {
        entries: stats.values().map(|p| p.entries).sum(),
        tenant: caller.tenant,
        by_prompt: stats
            .iter()
            .filter(|(_, p)| p.entries > 0)
            .map(|(k, p)| (k.clone(), p.entries))
            .collect(),
        hits,
        misses,
        hit_rate: hit_rate(hits, misses),
        saved_usd: saved.to_usd_string(),
        prompts: stats
            .into_iter()
            .map(|(k, p)| {
                (
                    k,
                    PromptStatsOut {
                        entries: p.entries,
                        hits: p.hits,
                        misses: p.misses,
                        hit_rate: hit_rate(p.hits, p.misses),
                        saved_usd: MicroUsd(p.saved_micro).to_usd_string(),
                    },
                )
            })
            .collect(),
    }))
}
