//! The answer pipeline end to end in memory: a scripted model that records what it was
//! asked, configuration in a memory parameter store, an in-memory ledger. Streamed and
//! whole answers must agree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use quarry_core::admission::AdmitAll;
use quarry_core::cache::NoCache;
use quarry_core::chat::{ChatInput, Preparer};
use quarry_core::guardrails::{BedrockGuardrail, GuardrailConfig};
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::*;
use quarry_core::params::MemoryParams;
use quarry_core::ports::ModelClient;
use quarry_core::ports::{Dependency, GuardrailApplier, StoreError, UsageLedger};
use quarry_core::routing::RouteSpec;
use quarry_core::service::{
    Answer, AnswerRequest, CacheMode, ChatService, NoApplier, Ports, ServiceOptions, StreamItem,
};
use quarry_core::tenancy::{Caller, TenantPolicy};
use quarry_core::usage::UsageRecord;
use serde_json::json;
use tokio::time::Instant;

/// Answers with fixed text, whole or streamed in small chunks; records each request.
struct Model {
    text: String,
    requests: Mutex<Vec<(String, ModelRequest)>>,
}

impl Model {
    fn says(text: &str) -> Arc<Self> {
        Arc::new(Self {
            text: text.into(),
            requests: Mutex::new(Vec::new()),
        })
    }
    fn requests(&self) -> Vec<(String, ModelRequest)> {
        self.requests.lock().unwrap().clone()
    }
    /// Bedrock echoes the tier it served (`default` when none was asked).
    fn served(request: &ModelRequest) -> Served {
        Served {
            service_tier: Some(request.service_tier.unwrap_or(ServiceTier::Default)),
            ..Default::default()
        }
    }
    fn usage() -> TokenUsage {
        TokenUsage {
            input: 20,
            output: 10,
            ..Default::default()
        }
    }
}

#[async_trait]
impl ModelClient for Model {
    async fn converse(
        &self,
        model: &str,
        request: &ModelRequest,
        _: Duration,
    ) -> Result<ModelResponse, ModelError> {
        self.requests
            .lock()
            .unwrap()
            .push((model.into(), request.clone()));
        Ok(ModelResponse {
            content: vec![ContentBlock::Text(self.text.clone())],
            stop_reason: StopReason::EndTurn,
            usage: Self::usage(),
            latency_ms: 1,
            citations: Vec::new(),
            served: Self::served(request),
        })
    }

    async fn converse_stream(
        &self,
        model: &str,
        request: &ModelRequest,
        _: Duration,
    ) -> Result<ModelStream, ModelError> {
        self.requests
            .lock()
            .unwrap()
            .push((model.into(), request.clone()));
        let chars: Vec<char> = self.text.chars().collect();
        let mut events: Vec<Result<StreamEvent, ModelError>> = chars
            .chunks(3)
            .map(|c| {
                Ok(StreamEvent::TextDelta {
                    index: 0,
                    text: c.iter().collect(),
                })
            })
            .collect();
        events.push(Ok(StreamEvent::MessageStop {
            stop_reason: StopReason::EndTurn,
        }));
        events.push(Ok(StreamEvent::Metadata {
            usage: Self::usage(),
            latency_ms: 1,
            served: Self::served(request),
        }));
        Ok(futures::stream::iter(events).boxed())
    }
}

#[derive(Default)]
struct Ledger(Mutex<Vec<UsageRecord>>);

#[async_trait]
impl UsageLedger for Ledger {
    async fn record(&self, r: &UsageRecord) -> Result<(), StoreError> {
        self.0.lock().unwrap().push(r.clone());
        Ok(())
    }
}

/// Bedrock's ApplyGuardrail, unreachable.
struct BrokenApplier;

#[async_trait]
impl GuardrailApplier for BrokenApplier {
    async fn input_intervenes(&self, _: &BedrockGuardrail, _: &str) -> Result<bool, StoreError> {
        Err(StoreError::unavailable(
            Dependency::Bedrock,
            "guardrail",
            "connection refused",
        ))
    }
}

fn params() -> Arc<MemoryParams> {
    let p = Arc::new(MemoryParams::default());
    p.put(
        "/q/routing",
        &json!({
            "default_tier": "plain",
            "tiers": {"plain": ["text-only-v1"], "tools": ["tools-v1"]},
            "models": {
                "text-only-v1": {"context_window": 8000, "max_output_tokens": 1000, "tool_use": false,
                                 "service_tiers": ["flex"]},
                "tools-v1": {"context_window": 8000, "max_output_tokens": 1000}
            }
        })
        .to_string(),
    );
    p.put(
        "/q/pricing",
        &json!({"service_tiers": {"flex": "0.5"}, "models": {
            "text-only-v1": {"input": "1", "output": "2"},
            "tools-v1": {"input": "1", "output": "2"}
        }})
        .to_string(),
    );
    p
}

fn service(
    model: Arc<Model>,
    applier: Arc<dyn GuardrailApplier>,
    ledger: Arc<Ledger>,
) -> ChatService {
    ChatService::new(
        Ports {
            preparer: Preparer::from_params(params(), "/q", Duration::from_secs(60)),
            invoker: Arc::new(Invoker::new(model, RetryPolicy::default())),
            cache: Arc::new(NoCache),
            admission: Arc::new(AdmitAll),
            ledger,
            applier,
            retrieval: Default::default(),
            audit: Arc::new(quarry_core::ports::NoAudit),
        },
        ServiceOptions::default(),
    )
}

fn caller(guardrails: Option<GuardrailConfig>) -> Caller {
    Caller {
        tenant: "acme".into(),
        admin: false,
        operator: false,
        key_label: None,
        policy: TenantPolicy {
            allowed_tiers: vec!["*".into()],
            guardrails,
            ..Default::default()
        },
    }
}

fn request(id: &str, tier: &str, schema: Option<serde_json::Value>) -> AnswerRequest {
    AnswerRequest {
        id: id.into(),
        input: ChatInput {
            messages: vec![Message::user("give me the data")],
            route: Some(RouteSpec::Tier(tier.into())),
            output_schema: schema,
            ..Default::default()
        },
        cache: CacheMode::Bypass,
        deadline: Instant::now() + Duration::from_secs(30),
    }
}

/// Collects a stream: the text forwarded, and the final item.
async fn collect(service: &ChatService, req: AnswerRequest, who: &Caller) -> (String, StreamItem) {
    let mut stream = service.answer_stream(who, req).await.unwrap();
    let mut text = String::new();
    while let Some(item) = stream.events.next().await {
        match item {
            StreamItem::Text(t) => text.push_str(&t),
            StreamItem::ToolStart { .. } | StreamItem::ToolDelta { .. } => {}
            last => return (text, last),
        }
    }
    panic!("the stream ended without a final item");
}

#[tokio::test]
async fn streamed_structured_output_matches_the_whole_answer_on_a_model_without_tools() {
    let schema =
        json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}});
    let model = Model::says("```json\n{\"n\": 7}\n```");
    let ledger = Arc::new(Ledger::default());
    let service = service(model.clone(), Arc::new(NoApplier), ledger.clone());
    let who = caller(None);

    let whole: Answer = service
        .answer(&who, request("r1", "plain", Some(schema.clone())))
        .await
        .unwrap();
    assert_eq!(whole.json, Some(json!({"n": 7})));

    let (_, last) = collect(&service, request("r2", "plain", Some(schema)), &who).await;
    let StreamItem::Done(summary) = last else {
        panic!("the stream failed: {last:?}");
    };
    assert_eq!(summary.json, Some(json!({"n": 7})));
    // The model cannot use tools: both asked by instruction, neither forced a tool on it.
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    for (_, r) in &requests {
        assert!(r.tools.is_empty() && r.tool_choice.is_none(), "{r:?}");
    }
    assert_eq!(
        requests[0].1, requests[1].1,
        "streamed and whole requests differ"
    );
    assert_eq!(ledger.0.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_streamed_request_fails_closed_and_carries_the_bedrock_guardrail() {
    let guard = GuardrailConfig {
        bedrock: Some(BedrockGuardrail {
            id: "g1".into(),
            version: "1".into(),
        }),
        ..Default::default()
    };
    // The input check (before the first byte) cannot be made: the request is refused, no
    // model is called, nothing is charged.
    let ledger = Arc::new(Ledger::default());
    let model = Model::says("fine words");
    let broken = service(model.clone(), Arc::new(BrokenApplier), ledger.clone());
    let Err(e) = broken
        .answer_stream(&caller(Some(guard.clone())), request("r3", "plain", None))
        .await
    else {
        panic!("a failed check must not pass");
    };
    assert_eq!(e.status_code(), 503, "{e}");
    assert!(e.to_string().contains("Bedrock"), "{e}");
    assert!(model.requests().is_empty());
    assert!(ledger.0.lock().unwrap().is_empty());

    // With the check passing, ConverseStream itself carries the guardrail (Bedrock checks
    // each chunk before it sends it).
    let model = Model::says("fine words");
    let ok = service(model.clone(), Arc::new(NoApplier), ledger.clone());
    let (text, last) = collect(&ok, request("r4", "plain", None), &caller(Some(guard))).await;
    assert!(matches!(last, StreamItem::Done(_)), "{last:?}");
    assert_eq!(text, "fine words");
    let requests = model.requests();
    assert_eq!(
        requests[0].1.guardrail.as_ref().map(|g| g.id.as_str()),
        Some("g1")
    );
}

#[tokio::test]
async fn the_tier_bedrock_served_is_priced_and_recorded_whole_or_streamed() {
    let ledger = Arc::new(Ledger::default());
    let model = Model::says("fine words");
    let service = service(model.clone(), Arc::new(NoApplier), ledger.clone());
    let who = caller(None);
    let flex = |id: &str| {
        let mut r = request(id, "plain", None);
        r.input.service_tier = Some(ServiceTier::Flex);
        r
    };
    let default = service
        .answer(&who, request("d", "plain", None))
        .await
        .unwrap();
    let whole = service.answer(&who, flex("w")).await.unwrap();
    let (_, last) = collect(&service, flex("s"), &who).await;
    let StreamItem::Done(streamed) = last else {
        panic!("{last:?}");
    };
    assert_eq!(whole.served.service_tier, Some(ServiceTier::Flex));
    assert_eq!(streamed.served.service_tier, Some(ServiceTier::Flex));
    // 20 input and 10 output tokens at $1 and $2 per million: 40 micro-dollars; flex half.
    assert_eq!(default.cost.map(|c| c.0), Some(40));
    assert_eq!(whole.cost.map(|c| c.0), Some(20));
    assert_eq!(streamed.cost.map(|c| c.0), Some(20));
    let tiers: Vec<_> = ledger
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.id.clone(), r.service_tier, r.cost.map(|c| c.0)))
        .collect();
    assert_eq!(tiers.len(), 3, "{tiers:?}");
    assert_eq!(tiers[0].1, Some(ServiceTier::Default));
    assert!(
        tiers[1..]
            .iter()
            .all(|t| t.1 == Some(ServiceTier::Flex) && t.2 == Some(20)),
        "{tiers:?}"
    );
    // A tier the chain cannot serve is a 400 before any call.
    let mut priority = request("p", "tools", None);
    priority.input.service_tier = Some(ServiceTier::Priority);
    let calls = model.requests().len();
    let e = service.answer(&who, priority).await.unwrap_err();
    assert_eq!(e.status_code(), 400, "{e}");
    assert!(e.to_string().contains("priority"), "{e}");
    assert_eq!(model.requests().len(), calls);
}
