//! The invocation policy against a scripted in-memory model (time is virtual: tokio's paused
//! clock, so backoff and deadlines are exact and instant).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use quarry_core::invoke::{AttemptOutcome, FailureKind, Invoker, RetryPolicy};
use quarry_core::model::*;
use quarry_core::ports::ModelClient;
use quarry_core::routing::ModelTarget;
use tokio::time::Instant;

#[derive(Clone)]
enum Step {
    Fail(ModelErrorKind),
    Hang,
    Answer,
    /// A stream that errors after `n` text deltas.
    StreamFailAfter(usize),
}

#[derive(Default)]
struct Scripted {
    script: Mutex<HashMap<String, VecDeque<Step>>>,
    calls: Mutex<Vec<String>>,
    /// The service tier of each Converse call, as sent.
    tiers: Mutex<Vec<Option<ServiceTier>>>,
}

impl Scripted {
    fn on(self, model: &str, steps: &[Step]) -> Self {
        self.script
            .lock()
            .unwrap()
            .insert(model.into(), steps.iter().cloned().collect());
        self
    }
    fn next(&self, model: &str) -> Step {
        self.calls.lock().unwrap().push(model.into());
        self.script
            .lock()
            .unwrap()
            .get_mut(model)
            .and_then(|q| {
                if q.len() > 1 {
                    q.pop_front()
                } else {
                    q.front().cloned()
                }
            })
            .unwrap_or(Step::Answer)
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// As Bedrock does: a model without prompt caching rejects `cachePoint` blocks.
fn strict_about_cache_points(model: &str, request: &ModelRequest) -> Result<(), ModelError> {
    let has_points = request
        .system
        .iter()
        .any(|b| matches!(b, SystemBlock::CachePoint));
    if model.starts_with("nocache") && has_points {
        return Err(ModelError::new(
            ModelErrorKind::Validation,
            "this model does not support prompt caching",
        ));
    }
    Ok(())
}

fn answer(model: &str) -> ModelResponse {
    ModelResponse {
        content: vec![ContentBlock::Text(format!("from {model}"))],
        stop_reason: StopReason::EndTurn,
        usage: TokenUsage {
            input: 10,
            output: 5,
            ..Default::default()
        },
        latency_ms: 1,
        citations: Vec::new(),
        served: Default::default(),
    }
}

#[async_trait]
impl ModelClient for Scripted {
    async fn converse(
        &self,
        model: &str,
        request: &ModelRequest,
        _: Duration,
    ) -> Result<ModelResponse, ModelError> {
        strict_about_cache_points(model, request)?;
        self.tiers.lock().unwrap().push(request.service_tier);
        // A model called in a region is scripted as `model@region`.
        let key = match &request.region {
            Some(r) => format!("{model}@{r}"),
            None => model.to_owned(),
        };
        match self.next(&key) {
            Step::Fail(kind) => Err(ModelError::new(kind, "scripted")),
            Step::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(answer(model))
            }
            _ => Ok(answer(model)),
        }
    }

    async fn converse_stream(
        &self,
        model: &str,
        request: &ModelRequest,
        _: Duration,
    ) -> Result<ModelStream, ModelError> {
        strict_about_cache_points(model, request)?;
        let events = |n: usize, fail: bool| {
            let mut v: Vec<Result<StreamEvent, ModelError>> = Vec::new();
            for i in 0..n {
                v.push(Ok(StreamEvent::TextDelta {
                    index: 0,
                    text: format!("t{i} "),
                }));
            }
            if fail {
                v.push(Err(ModelError::new(
                    ModelErrorKind::StreamError,
                    "mid-stream",
                )));
            } else {
                v.push(Ok(StreamEvent::MessageStop {
                    stop_reason: StopReason::EndTurn,
                }));
            }
            futures::stream::iter(v).boxed()
        };
        match self.next(model) {
            Step::Fail(kind) => Err(ModelError::new(kind, "scripted")),
            Step::StreamFailAfter(n) => Ok(events(n, true)),
            _ => Ok(events(3, false)),
        }
    }
}

fn chain(ids: &[&str]) -> Vec<ModelTarget> {
    ids.iter()
        .map(|i| ModelTarget::new(i, i, Default::default()))
        .collect()
}

fn invoker(client: Arc<Scripted>) -> Invoker {
    Invoker::new(client, RetryPolicy::default())
}

fn request() -> ModelRequest {
    ModelRequest {
        messages: vec![Message::user("hi")],
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn primary_always_throttled_falls_back_and_says_why() {
    let client = Arc::new(Scripted::default().on("a", &[Step::Fail(ModelErrorKind::Throttled)]));
    let inv = invoker(client.clone());
    let out = inv
        .invoke(
            &chain(&["a", "b"]),
            &request(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.target.invoke_id, "b");
    assert_eq!(out.response.text(), "from b");
    assert_eq!(client.calls(), ["a", "a", "a", "b"]);
    let fb = out.fallbacks();
    assert_eq!(fb.len(), 1);
    assert_eq!(
        (fb[0].model.as_str(), fb[0].reason.as_str(), fb[0].attempts),
        ("a", "throttled", 3)
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_twice_then_the_same_model_answers() {
    let client = Arc::new(Scripted::default().on(
        "a",
        &[
            Step::Fail(ModelErrorKind::Throttled),
            Step::Fail(ModelErrorKind::Throttled),
            Step::Answer,
        ],
    ));
    let out = invoker(client.clone())
        .invoke(
            &chain(&["a", "b"]),
            &request(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.target.invoke_id, "a");
    assert_eq!(client.calls(), ["a", "a", "a"]);
    assert!(out.fallbacks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn validation_error_stops_everything() {
    let client = Arc::new(Scripted::default().on("a", &[Step::Fail(ModelErrorKind::Validation)]));
    let err = invoker(client.clone())
        .invoke(
            &chain(&["a", "b"]),
            &request(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Rejected);
    assert_eq!(client.calls(), ["a"]);
    let e = quarry_core::Error::Invoke(err);
    assert_eq!(e.status_code(), 400);
    assert!(!e.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn access_denied_falls_back_without_retry() {
    let client = Arc::new(Scripted::default().on("a", &[Step::Fail(ModelErrorKind::AccessDenied)]));
    let out = invoker(client.clone())
        .invoke(
            &chain(&["a", "b"]),
            &request(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(client.calls(), ["a", "b"]);
    assert_eq!(out.fallbacks()[0].reason, "access_denied");
}

#[tokio::test(start_paused = true)]
async fn every_model_down_fails_before_the_deadline() {
    let client = Arc::new(
        Scripted::default()
            .on("a", &[Step::Fail(ModelErrorKind::ServiceUnavailable)])
            .on("b", &[Step::Hang]),
    );
    let started = Instant::now();
    let budget = Duration::from_secs(10);
    let err = invoker(client)
        .invoke(&chain(&["a", "b"]), &request(), started + budget)
        .await
        .unwrap_err();
    assert!(started.elapsed() <= budget, "took {:?}", started.elapsed());
    assert_eq!(err.kind, FailureKind::DeadlineExceeded);
    let e = quarry_core::Error::Invoke(err);
    assert_eq!(e.status_code(), 504);
    assert!(e.to_string().contains("a (3x service_unavailable)"), "{e}");
    assert!(e.to_string().contains("b (timeout"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn exhausted_chain_is_a_503_naming_what_was_tried() {
    let client = Arc::new(
        Scripted::default()
            .on("a", &[Step::Fail(ModelErrorKind::Throttled)])
            .on("b", &[Step::Fail(ModelErrorKind::InternalServer)]),
    );
    let err = invoker(client)
        .invoke(
            &chain(&["a", "b"]),
            &request(),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Exhausted);
    let e = quarry_core::Error::Invoke(err);
    assert_eq!(
        (e.status_code(), e.error_type()),
        (503, "models_unavailable")
    );
    assert!(e.retry_after().is_some());
}

#[tokio::test(start_paused = true)]
async fn circuit_opens_after_consecutive_throttles_and_skips_the_model() {
    let client = Arc::new(Scripted::default().on("a", &[Step::Fail(ModelErrorKind::Throttled)]));
    let inv = Invoker::new(
        client.clone(),
        RetryPolicy {
            breaker_threshold: 4,
            ..RetryPolicy::default()
        },
    );
    let deadline = || Instant::now() + Duration::from_secs(60);
    inv.invoke(&chain(&["a", "b"]), &request(), deadline())
        .await
        .unwrap();
    inv.invoke(&chain(&["a", "b"]), &request(), deadline())
        .await
        .unwrap();
    // 3 + 1 throttles: open. The third request skips `a` without calling it.
    let before = client.calls().len();
    let out = inv
        .invoke(&chain(&["a", "b"]), &request(), deadline())
        .await
        .unwrap();
    assert_eq!(&client.calls()[before..], ["b"]);
    assert_eq!(out.attempts[0].outcome, AttemptOutcome::CircuitOpen);
    assert_eq!(out.fallbacks()[0].reason, "circuit_open");
    // After the cooldown, `a` gets a trial call again.
    tokio::time::advance(Duration::from_secs(31)).await;
    let before = client.calls().len();
    inv.invoke(&chain(&["a", "b"]), &request(), deadline())
        .await
        .unwrap();
    assert_eq!(client.calls()[before], "a");
}

#[tokio::test(start_paused = true)]
async fn stream_falls_back_before_the_first_token_only() {
    let client = Arc::new(
        Scripted::default()
            .on("a", &[Step::Fail(ModelErrorKind::Throttled)])
            .on("b", &[Step::StreamFailAfter(2)]),
    );
    let inv = Invoker::new(
        client.clone(),
        RetryPolicy {
            max_attempts_per_model: 1,
            ..RetryPolicy::default()
        },
    );
    let mut s = inv
        .invoke_stream(
            &chain(&["a", "b", "c"]),
            &request(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(s.target.invoke_id, "b");
    assert_eq!(s.fallbacks()[0].model, "a");
    assert!(s.head.last().unwrap().is_content());
    // After the first token, the mid-stream error reaches the caller: no fallback to c.
    let mut rest = Vec::new();
    while let Some(item) = s.rest.next().await {
        rest.push(item);
    }
    assert!(matches!(rest.last(), Some(Err(e)) if e.kind == ModelErrorKind::StreamError));
    assert_eq!(client.calls(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_stream_falling_back_to_a_model_without_prompt_caching_drops_the_cache_points() {
    let client =
        Arc::new(Scripted::default().on("cache", &[Step::Fail(ModelErrorKind::Throttled)]));
    let inv = invoker(client.clone());
    let caching = quarry_core::routing::ModelCapabilities {
        prompt_caching: true,
        ..Default::default()
    };
    let chain = vec![
        ModelTarget::new("cache", "cache", caching),
        ModelTarget::new("nocache-b", "nocache-b", Default::default()),
    ];
    let mut req = request();
    req.system = vec![SystemBlock::Text("long".into()), SystemBlock::CachePoint];
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = inv
        .invoke_stream(&chain, &req, deadline)
        .await
        .expect("the fallback answers");
    assert_eq!(stream.target.invoke_id, "nocache-b");
    let whole = inv
        .invoke(&chain, &req, deadline)
        .await
        .expect("the fallback answers");
    assert_eq!(whole.target.invoke_id, "nocache-b");
}

fn flex_chain(ids: &[&str]) -> Vec<ModelTarget> {
    ids.iter()
        .map(|i| {
            let caps = quarry_core::routing::ModelCapabilities {
                service_tiers: vec![ServiceTier::Flex],
                ..Default::default()
            };
            ModelTarget::new(i, i, caps)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn flex_that_is_throttled_or_slow_is_retried_at_once_at_the_standard_tier() {
    for failure in [ModelErrorKind::Throttled, ModelErrorKind::Timeout] {
        let client = Arc::new(Scripted::default().on("a", &[Step::Fail(failure), Step::Answer]));
        let request = ModelRequest {
            service_tier: Some(ServiceTier::Flex),
            ..request()
        };
        let started = Instant::now();
        let done = invoker(client.clone())
            .invoke(
                &flex_chain(&["a", "b"]),
                &request,
                Instant::now() + Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(done.target.invoke_id, "a", "{failure:?}");
        assert_eq!(
            *client.tiers.lock().unwrap(),
            [Some(ServiceTier::Flex), None]
        );
        // No backoff: standard capacity was not what was short.
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
    // A model that never served flex was called at the standard tier: a throttle there is a
    // throttle, retried with backoff as always.
    let client = Arc::new(
        Scripted::default().on("a", &[Step::Fail(ModelErrorKind::Throttled), Step::Answer]),
    );
    let request = ModelRequest {
        service_tier: Some(ServiceTier::Flex),
        ..request()
    };
    let started = Instant::now();
    invoker(client.clone())
        .invoke(
            &chain(&["a"]),
            &request,
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(started.elapsed() > Duration::ZERO);
    assert_eq!(*client.tiers.lock().unwrap(), [None, None]);
}

/// The same model in two regions, then another model.
fn regional_chain() -> Vec<ModelTarget> {
    vec![
        ModelTarget::new("a", "a", Default::default()).in_region(Some("us-east-1")),
        ModelTarget::new("a", "a", Default::default()).in_region(Some("us-west-2")),
        ModelTarget::new("b", "b", Default::default()),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_region_that_throttles_moves_traffic_to_the_next_region_before_the_next_model() {
    let client =
        Arc::new(Scripted::default().on("a@us-east-1", &[Step::Fail(ModelErrorKind::Throttled)]));
    let inv = Invoker::new(
        client.clone(),
        RetryPolicy {
            breaker_threshold: 3,
            ..RetryPolicy::default()
        },
    );
    let deadline = || Instant::now() + Duration::from_secs(60);
    let out = inv
        .invoke(&regional_chain(), &request(), deadline())
        .await
        .unwrap();
    assert_eq!(out.target.region.as_deref(), Some("us-west-2"));
    assert_eq!(
        client.calls(),
        ["a@us-east-1", "a@us-east-1", "a@us-east-1", "a@us-west-2"]
    );
    assert_eq!(out.attempts[0].region.as_deref(), Some("us-east-1"));
    // Its breaker is open: the next request goes straight to the next region, and the
    // same model's breaker in that region stays closed.
    let before = client.calls().len();
    let out = inv
        .invoke(&regional_chain(), &request(), deadline())
        .await
        .unwrap();
    assert_eq!(&client.calls()[before..], ["a@us-west-2"]);
    assert_eq!(out.attempts[0].outcome, AttemptOutcome::CircuitOpen);
    // Once the region recovers and the cooldown passes, traffic goes back to it.
    client
        .script
        .lock()
        .unwrap()
        .insert("a@us-east-1".into(), [Step::Answer].into_iter().collect());
    tokio::time::advance(Duration::from_secs(31)).await;
    let out = inv
        .invoke(&regional_chain(), &request(), deadline())
        .await
        .unwrap();
    assert_eq!(out.target.region.as_deref(), Some("us-east-1"));
}

#[tokio::test(start_paused = true)]
async fn a_provisioned_model_at_capacity_overflows_to_on_demand_at_once() {
    let pt = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcd1234efgh";
    let client = Arc::new(Scripted::default().on(pt, &[Step::Fail(ModelErrorKind::Throttled)]));
    let inv = invoker(client.clone());
    let started = Instant::now();
    let out = inv
        .invoke(
            &chain(&[pt, "b"]),
            &request(),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(out.target.invoke_id, "b");
    assert_eq!(
        client.calls(),
        [pt, "b"],
        "no retry of a provisioned model at capacity"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no backoff before the overflow"
    );
}
