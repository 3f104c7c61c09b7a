//! The chat API for the overhead benchmark: the production router and Bedrock adapter
//! (reaching the emulator through AWS_ENDPOINT_URL_BEDROCK_RUNTIME), with configuration in
//! memory and the cache, ledger and admission as no-ops, so the figure is the gateway's own
//! work plus one real SDK call. Prints `gateway listening on URL` and `API key: KEY`.

#![allow(clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use chat_handler::{AppState, HandlerPorts, Options};
use quarry_admin::infra::InfraSources;
use quarry_aws::Settings;
use quarry_aws::bedrock::BedrockModels;
use quarry_core::admission::AdmitAll;
use quarry_core::cache::{Claim, NoCache};
use quarry_core::params::MemoryParams;
use quarry_core::ports::IdempotencyStore;
use quarry_core::ports::StoreError;
use quarry_core::tenancy::{KeyEntry, TenantDirectory, TenantPolicy, hash_key};
use quarry_core::usage::NoLedger;

struct NoIdempotency;

#[async_trait]
impl IdempotencyStore for NoIdempotency {
    async fn claim(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        Ok(Claim::Fresh)
    }
    async fn complete(
        &self,
        _: &str,
        _: &str,
        _: u16,
        _: &serde_json::Value,
        _: std::time::Duration,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn abandon(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let infra = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra");
        let sources = InfraSources::load(&infra).expect("infra");
        let settings = Settings::for_stage("bench");
        let params = Arc::new(MemoryParams::default());
        params.put(
            &settings.param("routing"),
            &serde_json::to_string(&sources.routing).expect("json"),
        );
        params.put(
            &settings.param("pricing"),
            &serde_json::to_string(&sources.pricing).expect("json"),
        );
        for p in &sources.prompts {
            params.put(
                &settings.prompt_param(&p.name),
                &serde_json::to_string(p).expect("json"),
            );
        }
        let key = "qk_bench_key";
        let mut directory = TenantDirectory::default();
        directory.tenants.insert(
            "bench".into(),
            TenantPolicy {
                allowed_tiers: vec!["*".into()],
                allowed_models: vec!["*".into()],
                ..Default::default()
            },
        );
        directory.keys.insert(
            hash_key(key),
            KeyEntry {
                tenant: "bench".into(),
                admin: false,
                operator: false,
                label: None,
            },
        );
        params.put(
            &settings.param("tenants"),
            &serde_json::to_string(&directory).expect("json"),
        );

        let sdk = quarry_aws::sdk::load().await;
        let bedrock = Arc::new(BedrockModels::new(&sdk));
        let ports = HandlerPorts {
            params,
            models: bedrock.clone(),
            cache: Arc::new(NoCache),
            embeddings: Arc::new(quarry_core::embeddings::NoEmbeddingCache),
            idempotency: Arc::new(NoIdempotency),
            admission: Arc::new(AdmitAll),
            ledger: Arc::new(NoLedger),
            applier: bedrock,
            jobs: Arc::new(quarry_aws::jobs::DynamoJobs::new(
                &sdk,
                "unused-in-this-benchmark",
            )),
            bulk_jobs: Arc::new(quarry_aws::jobs::DynamoJobs::new(
                &sdk,
                "unused-in-this-benchmark",
            )),
            retrieval: Default::default(),
            audit: Arc::new(quarry_core::ports::NoAudit),
            feedback: Arc::new(quarry_aws::feedback::DynamoFeedback::new(
                &sdk,
                "unused-in-this-benchmark",
            )),
        };
        let state = Arc::new(AppState::with_ports(ports, settings, Options::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!(
            "gateway listening on http://{}",
            listener.local_addr().expect("addr")
        );
        println!("API key: {key}");
        let _ = std::io::stdout().flush();
        axum::serve(listener, chat_handler::app(state))
            .await
            .expect("serve");
    });
}
