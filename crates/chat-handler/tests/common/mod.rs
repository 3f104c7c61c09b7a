//! Setup shared by the tests of the chat API on adapters that are never reached.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use chat_handler::{AppState, HandlerPorts, Options, app};
use quarry_aws::Settings;
use quarry_aws::bedrock::BedrockModels;
use quarry_aws::dynamo_cache::DynamoCache;
use quarry_aws::jobs::DynamoJobs;
use quarry_core::admission::AdmitAll;
use quarry_core::params::{MemoryParams, ParamError, Parameter};
use quarry_core::ports::ParameterStore;
use quarry_core::usage::NoLedger;
use quarry_http::AuthMode;

/// A parameter store that counts its reads (and can be down).
#[derive(Default)]
pub struct CountingParams {
    pub inner: MemoryParams,
    pub reads: AtomicUsize,
}

impl CountingParams {
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ParameterStore for CountingParams {
    async fn get(&self, name: &str, decrypt: bool) -> Result<Parameter, ParamError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(name, decrypt).await
    }
}

/// The chat API on the production adapters, none of which is reachable (no endpoint is
/// running), with the parameter store in memory and down.
pub fn unreachable_app(auth: AuthMode) -> (axum::Router, Arc<CountingParams>) {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    let settings = Settings::for_stage("anonymous");
    let params = Arc::new(CountingParams::default());
    params.inner.set_down(true);
    let bedrock = Arc::new(BedrockModels::new(&sdk));
    let cache = Arc::new(DynamoCache::new(&sdk, &settings.cache_table));
    let ports = HandlerPorts {
        params: params.clone(),
        models: bedrock.clone(),
        cache: cache.clone(),
        idempotency: cache.clone(),
        embeddings: cache,
        admission: Arc::new(AdmitAll),
        ledger: Arc::new(NoLedger),
        applier: bedrock,
        jobs: Arc::new(DynamoJobs::new(&sdk, &settings.jobs_table)),
        bulk_jobs: Arc::new(DynamoJobs::new(&sdk, &settings.jobs_table)),
        retrieval: Default::default(),
        audit: Arc::new(quarry_core::ports::NoAudit),
        feedback: Arc::new(quarry_aws::feedback::DynamoFeedback::new(
            &sdk,
            &settings.usage_table,
        )),
    };
    let options = Options {
        auth,
        ..Options::default()
    };
    let state = AppState::with_ports(ports, settings, options);
    (app(Arc::new(state)), params)
}

pub fn request(
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> http::Request<axum::body::Body> {
    let mut r = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    let body = if method == "POST" {
        r#"{"model": "fast", "messages": [{"role": "user", "content": "hi"}]}"#
    } else {
        ""
    };
    r.body(axum::body::Body::from(body)).unwrap()
}
