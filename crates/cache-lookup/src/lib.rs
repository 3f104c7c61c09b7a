//! cache-lookup: the response cache's own API. It answers from the cache only: its chat
//! service has no model client (and its role no Bedrock permission), so a lookup can never
//! cause a model call.
//!
//! * `POST /v1/cache/lookup`: the body of `/v1/chat` -> the cached response, or 404;
//! * `DELETE /v1/cache?prompt=P&tenant=T`: purge (admin keys only; `tenant` defaults to
//!   the key's own);
//! * `GET /v1/cache/stats`: the caller's entries, by prompt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::Method;
use quarry_aws::Settings;
use quarry_aws::dynamo_cache::DynamoCache;
use quarry_aws::ssm::SsmParams;
use quarry_core::Error;
use quarry_core::admission::AdmitAll;
use quarry_core::chat::Preparer;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::{
    ModelClient, ModelError, ModelErrorKind, ModelRequest, ModelResponse, ModelStream,
};
use quarry_core::params::ParameterStore;
use quarry_core::service::{ChatService, NoApplier, Ports, ServiceOptions};
use quarry_core::usage::NoLedger;
use quarry_http::native::{ChatRequest, Limits};
use quarry_http::routes::{Route, router};
use quarry_http::{AcceptOptions, ApiError, AuthMode, RequestMeta, accept, parse_json};
use serde::Deserialize;
use serde_json::json;

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
                max_body_bytes: num("QUARRY_MAX_BODY_BYTES", 1024 * 1024)? as usize,
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
}

impl CacheState {
    pub fn from_sdk(sdk: &SdkConfig, settings: &Settings, options: CacheOptions) -> Self {
        let params: Arc<dyn ParameterStore> = Arc::new(SsmParams::new(sdk));
        let store = DynamoCache::new(sdk, &settings.cache_table);
        let preparer =
            Preparer::from_params(params, &settings.param_prefix, options.config_max_age);
        let service = ChatService::new(
            Ports {
                preparer,
                invoker: Arc::new(Invoker::new(Arc::new(NoModels), RetryPolicy::default())),
                cache: Arc::new(store.clone()),
                admission: Arc::new(AdmitAll),
                ledger: Arc::new(NoLedger),
                applier: Arc::new(NoApplier),
            },
            ServiceOptions::default(),
        );
        Self {
            options,
            service,
            store,
        }
    }
}

type Shared = Arc<CacheState>;

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
    router(routes()).with_state(state)
}

async fn lookup(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    let incoming = match accept(request, &state.options.accept, state.service.configs()).await {
        Ok(i) => i,
        Err((e, meta)) => return ApiError::new(e, &meta.request_id).into_response(),
    };
    let meta = incoming.meta;
    let result = async {
        let request: ChatRequest = parse_json(&incoming.body)?;
        let (input, _, _) = request.into_input(&state.options.limits)?;
        state.service.lookup(&incoming.caller, input).await
    }
    .await;
    match result {
        Ok(Some(answer)) => axum::Json(quarry_http::native::response(
            &meta.request_id,
            &answer,
            meta.elapsed_ms(),
        ))
        .into_response(),
        Ok(None) => ApiError::new(
            Error::NotFound("no cached answer for this request".into()),
            &meta.request_id,
        )
        .into_response(),
        Err(e) => ApiError::new(e, &meta.request_id).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct PurgeQuery {
    prompt: Option<String>,
    tenant: Option<String>,
}

/// Runs a body-less route: authenticates, then `f` with the caller; errors get the envelope.
async fn with_caller<F, Fut>(state: &CacheState, request: http::Request<Body>, f: F) -> Response
where
    F: FnOnce(quarry_core::tenancy::Caller) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, Error>>,
{
    let (parts, _) = request.into_parts();
    let meta = RequestMeta::from_parts(
        &parts,
        state.options.accept.request_timeout,
        state.options.accept.deadline_margin,
    );
    let result = match quarry_http::caller(
        &parts,
        &state.options.accept.auth,
        state.service.configs(),
    )
    .await
    {
        Ok(caller) => f(caller).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => ApiError::new(e, &meta.request_id).into_response(),
    }
}

async fn purge(
    State(state): State<Shared>,
    Query(q): Query<PurgeQuery>,
    request: http::Request<Body>,
) -> Response {
    let store = state.store.clone();
    with_caller(&state, request, move |caller| async move {
        if !caller.admin {
            return Err(Error::Forbidden(
                "purging the cache needs an admin key".into(),
            ));
        }
        let tenant = q.tenant.unwrap_or(caller.tenant);
        let deleted = store
            .purge(&tenant, q.prompt.as_deref())
            .await
            .map_err(Error::from)?;
        tracing::info!(%tenant, prompt = q.prompt.as_deref(), deleted, "cache purged");
        Ok(json!({ "tenant": tenant, "prompt": q.prompt, "deleted": deleted }))
    })
    .await
}

async fn stats(State(state): State<Shared>, request: http::Request<Body>) -> Response {
    let store = state.store.clone();
    with_caller(&state, request, move |caller| async move {
        let by_prompt = store.stats(&caller.tenant).await.map_err(Error::from)?;
        let entries: u64 = by_prompt.values().sum();
        Ok(json!({ "tenant": caller.tenant, "entries": entries, "by_prompt": by_prompt }))
    })
    .await
}
