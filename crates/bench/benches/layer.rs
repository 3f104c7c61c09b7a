//! CPU time the invocation layer adds per request: routing, template rendering, cost, the
//! request/response mapping onto the SDK's types, and the whole chat service (prompt,
//! render, route, guardrails, invoke, price)
//! with in-memory ports and an instant model (so only Quarry's own work is measured).
//! `cargo bench -p quarry-bench --bench layer` (or `make bench`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types as bt;
use criterion::{Criterion, criterion_group, criterion_main};
use quarry_admin::infra::InfraSources;
use quarry_core::admission::AdmitAll;
use quarry_core::cache::NoCache;
use quarry_core::chat::{ChatInput, Preparer, PromptRef};
use quarry_core::config::Configs;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::*;
use quarry_core::params::MemoryParams;
use quarry_core::ports::ModelClient;
use quarry_core::prompts::{CompiledPrompt, PromptStore};
use quarry_core::routing::RouteSpec;
use quarry_core::service::{
    AnswerRequest, CacheMode, ChatService, NoApplier, Ports, ServiceOptions,
};
use quarry_core::tenancy::{Caller, TenantPolicy};
use quarry_core::usage::NoLedger;
use serde_json::json;

struct Instant;

fn answer() -> ModelResponse {
    ModelResponse {
        content: vec![ContentBlock::Text(
            "A short, faithful summary of the text.".into(),
        )],
        stop_reason: StopReason::EndTurn,
        usage: TokenUsage {
            input: 120,
            output: 40,
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
        },
        latency_ms: 1,
        citations: Vec::new(),
        served: Default::default(),
    }
}

#[async_trait]
impl ModelClient for Instant {
    async fn converse(
        &self,
        _: &str,
        _: &ModelRequest,
        _: Duration,
    ) -> Result<ModelResponse, ModelError> {
        Ok(answer())
    }
    async fn converse_stream(
        &self,
        _: &str,
        _: &ModelRequest,
        _: Duration,
    ) -> Result<ModelStream, ModelError> {
        Err(ModelError::new(ModelErrorKind::Validation, "not used"))
    }
}

fn sources() -> InfraSources {
    InfraSources::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra"))
        .unwrap()
}

fn variables() -> serde_json::Map<String, serde_json::Value> {
    json!({"text": "Queues smooth spikes and let workers drain them at their own pace. ".repeat(8), "max_words": 40})
        .as_object()
        .unwrap()
        .clone()
}

fn bench(c: &mut Criterion) {
    let s = sources();
    let mut g = c.benchmark_group("layer");

    let routing = s.routing.clone();
    g.bench_function("route", |b| {
        b.iter(|| {
            routing
                .route(Some(&RouteSpec::Tier("fast".into())))
                .unwrap()
        })
    });

    let prompt = CompiledPrompt::compile(
        s.prompts
            .iter()
            .find(|p| p.name == "summarize")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let vars = variables();
    g.bench_function("render", |b| b.iter(|| prompt.render(&vars).unwrap()));

    let pricing = s.pricing.clone();
    let usage = TokenUsage {
        input: 1234,
        output: 321,
        cache_read: 2048,
        cache_write: 0,
        cache_write_1h: 0,
    };
    g.bench_function("cost", |b| {
        b.iter(|| pricing.cost("anthropic.claude-3-5-haiku-20241022-v1:0", &usage))
    });

    let request = ModelRequest {
        system: vec![SystemBlock::Text("You are a precise assistant.".into())],
        messages: vec![Message::user(
            "Summarize the following text in at most 40 words. ".repeat(10),
        )],
        params: InferenceParams {
            max_tokens: Some(400),
            temperature: Some(0.0),
            ..Default::default()
        },
        ..Default::default()
    };
    let output = ConverseOutput::builder()
        .output(bt::ConverseOutput::Message(
            bt::Message::builder()
                .role(bt::ConversationRole::Assistant)
                .content(bt::ContentBlock::Text(
                    "A short, faithful summary of the text.".into(),
                ))
                .build()
                .unwrap(),
        ))
        .stop_reason(bt::StopReason::EndTurn)
        .usage(
            bt::TokenUsage::builder()
                .input_tokens(120)
                .output_tokens(40)
                .total_tokens(160)
                .build()
                .unwrap(),
        )
        .metrics(
            bt::ConverseMetrics::builder()
                .latency_ms(250)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    g.bench_function("sdk_mapping", |b| {
        b.iter(|| {
            let p = quarry_aws::bedrock::parts(&request).unwrap();
            let r = quarry_aws::bedrock::model_response(&output);
            (p.messages.len(), r.usage)
        })
    });

    // The whole layer: prompt (cached) -> render -> route -> policy -> invoke -> price.
    let params = Arc::new(MemoryParams::default());
    params.put(
        "/quarry/bench/routing",
        &serde_json::to_string(&s.routing).unwrap(),
    );
    params.put(
        "/quarry/bench/pricing",
        &serde_json::to_string(&s.pricing).unwrap(),
    );
    for p in &s.prompts {
        params.put(
            &format!("/quarry/bench/prompts/{}", p.name),
            &serde_json::to_string(p).unwrap(),
        );
    }
    let configs = Arc::new(Configs::new(
        params.clone(),
        "/quarry/bench",
        Duration::from_secs(3600),
    ));
    let prompts = Arc::new(PromptStore::new(
        params,
        "/quarry/bench",
        Duration::from_secs(3600),
    ));
    let invoker = Arc::new(Invoker::new(Arc::new(Instant), RetryPolicy::default()));
    let service = ChatService::new(
        Ports {
            preparer: Preparer::new(configs, prompts),
            invoker,
            cache: Arc::new(NoCache),
            admission: Arc::new(AdmitAll),
            ledger: Arc::new(NoLedger),
            applier: Arc::new(NoApplier),
            retrieval: Default::default(),
            audit: Arc::new(quarry_core::ports::NoAudit),
        },
        ServiceOptions::default(),
    );
    let caller = Caller {
        tenant: "acme".into(),
        admin: false,
        operator: false,
        key_label: None,
        policy: TenantPolicy {
            allowed_tiers: vec!["*".into()],
            allowed_models: vec!["*".into()],
            ..Default::default()
        },
    };
    let input = ChatInput {
        prompt: Some(PromptRef {
            name: "summarize".into(),
            selector: None,
            ab_key: None,
        }),
        variables: variables(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("service", |b| {
        b.to_async(&rt).iter(|| async {
            let request = AnswerRequest {
                id: "bench".into(),
                input: input.clone(),
                cache: CacheMode::Bypass,
                deadline: tokio::time::Instant::now() + Duration::from_secs(10),
            };
            service.answer(&caller, request).await.unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = layer;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(layer);
