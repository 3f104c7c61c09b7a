//! The fault suite: concurrent chat traffic through the router while Bedrock throttles, the
//! primary model is down, the model is too slow for the deadline, DynamoDB (moto) goes away
//! and comes back, or SSM goes away after warm-up. For each: requests served, errors by type,
//! usage records lost (must be 0) and double charges (must be 0), the ledger checked against
//! the sum of the answers' costs after the spill is replayed.
//!
//! `cargo test -p integration-tests --test faults -- --nocapture` prints one line per scenario.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bedrock_emulator::{EmulatorConfig, ErrorKind};
use chat_handler::{AppState, Options};
use common::{chat, fault, options, state};
use cost_alarm::CostAlarm;
use futures::StreamExt;
use quarry_aws::ledger::{Buckets, month_pk};
use quarry_testkit::{Moto, Proxy, Stack};
use serde_json::json;

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

/// What a scenario did.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    served: usize,
    /// `status type` -> count.
    errors: BTreeMap<String, usize>,
    /// Sum of `cost_usd` of the answers, in micro-USD.
    reported_micros: u64,
    /// Answers that went to a fallback model.
    fell_back: usize,
}

/// Sends `n` distinct requests, `concurrency` at a time; `between` runs before request `i`
/// (to take a dependency down or up mid-run).
async fn drive(
    state: &Arc<AppState>,
    key: &str,
    n: usize,
    concurrency: usize,
    between: impl Fn(usize),
) -> Tally {
    let mut tally = Tally {
        requests: n,
        ..Tally::default()
    };
    let replies = futures::stream::iter(0..n)
        .map(|i| {
            between(i);
            let body = json!({
                "messages": [{"role": "user", "content": format!("fault suite request {i}")}],
                "temperature": 0.3,
            });
            async move {
                tokio::time::timeout(Duration::from_secs(30), chat(state, key, body))
                    .await
                    .expect("a request hung")
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    for r in replies {
        if r.status == 200 {
            tally.served += 1;
            tally.reported_micros += quarry_core::pricing::MicroUsd::parse_usd(
                r.body["cost_usd"].as_str().expect("a priced answer"),
            )
            .unwrap()
            .0;
            if !r.body["fallbacks"].as_array().unwrap().is_empty() {
                tally.fell_back += 1;
            }
            continue;
        }
        // Every error is typed; a 5xx is only a deliberate 503 or 504.
        let kind = r.body["error"]["type"]
            .as_str()
            .unwrap_or_else(|| panic!("untyped error {}: {}", r.status, r.body));
        assert!(
            r.status < 500 || r.status == 503 || r.status == 504,
            "{} {}",
            r.status,
            r.body
        );
        *tally
            .errors
            .entry(format!("{} {kind}", r.status))
            .or_default() += 1;
    }
    tally
}

/// Replays the spill, then checks the ledger against the answers: returns (lost, double,
/// records replayed from the spill).
async fn audit(stack: &Stack, tally: &Tally) -> (u64, u64, u64) {
    stack.settle().await;
    let summary = CostAlarm::from_sdk(&stack.sdk, &stack.settings)
        .handle(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            chrono::Utc::now(),
        )
        .await;
    assert_eq!(summary.replay_left, 0, "{:?}", summary.errors);
    let month = Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let total = stack
        .ledger()
        .get(&month_pk("acme", &month), "TOTAL")
        .await
        .unwrap();
    let served = tally.served as u64;
    // Calls cut off before they answered (the deadline) are charged too, estimated: they are
    // in the ledger but in no answer.
    let answered = total.requests - total.estimated_requests;
    // Cost and count must both match: a lost record and a double charge could not cancel out
    // in both.
    if total.estimated_requests == 0 {
        assert_eq!(total.cost_micro, tally.reported_micros, "ledger cost");
    } else {
        assert!(
            total.cost_micro > tally.reported_micros,
            "estimated calls cost something"
        );
    }
    (
        served.saturating_sub(answered),
        answered.saturating_sub(served),
        summary.replayed as u64,
    )
}

fn report(name: &str, tally: &Tally, lost: u64, double: u64) {
    let errors: Vec<String> = tally
        .errors
        .iter()
        .map(|(k, v)| format!("{v} x {k}"))
        .collect();
    println!(
        "| {name} | {} | {} | {} | {} | {lost} | {double} |",
        tally.requests,
        tally.served,
        tally.fell_back,
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        },
    );
    assert_eq!(
        (lost, double),
        (0, 0),
        "{name}: records lost / double charges"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_at_10_50_and_90_percent() {
    for percent in [10u32, 50, 90] {
        let stack = Stack::start().await;
        fault(&stack, "*", |f| {
            f.throttle_probability = f64::from(percent) / 100.0;
        });
        let s = state(&stack, options());
        let tally = drive(&s, stack.key("acme"), 40, 8, |_| {}).await;
        let (lost, double, _) = audit(&stack, &tally).await;
        report(
            &format!("Bedrock throttling {percent}%"),
            &tally,
            lost,
            double,
        );
        // Beyond that, the circuit breakers open after consecutive throttles and shed load
        // with a typed 503 and Retry-After instead of hammering a throttled model.
        for kind in tally.errors.keys() {
            assert_eq!(kind, "503 models_unavailable", "{:?}", tally.errors);
        }
        if percent == 10 {
            // Three attempts on each of two models: a 10% throttle rate is absorbed.
            assert_eq!(tally.served, tally.requests, "{:?}", tally.errors);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_of_the_primary_model_falls_back() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| {
        f.outage = Some(ErrorKind::ServiceUnavailableException);
    });
    let s = state(&stack, options());
    let tally = drive(&s, stack.key("acme"), 30, 8, |_| {}).await;
    let (lost, double, _) = audit(&stack, &tally).await;
    report("primary model outage", &tally, lost, double);
    assert_eq!(
        (tally.served, tally.fell_back),
        (tally.requests, tally.requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_slower_than_the_deadline_gets_a_504_not_a_hang() {
    let stack = Stack::start().await;
    // Every model answers after 1.5 s; the request's budget is 1 s.
    fault(&stack, "*", |f| f.slow_ms = 1500);
    let s = state(
        &stack,
        Options {
            request_timeout: Duration::from_secs(1),
            ..options()
        },
    );
    let tally = drive(&s, stack.key("acme"), 16, 8, |_| {}).await;
    let (lost, double, _) = audit(&stack, &tally).await;
    report("slow model past the deadline", &tally, lost, double);
    assert_eq!(tally.served, 0);
    // Every call was running when the deadline fired: each may be billed, so each is charged
    // (estimated), none answered.
    let month = Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let total = stack
        .ledger()
        .get(&month_pk("acme", &month), "TOTAL")
        .await
        .unwrap();
    assert!(
        total.estimated_requests >= tally.requests as u64,
        "each request's cut-off call is charged: {total:?}"
    );
    assert_eq!(total.requests, total.estimated_requests);
    assert_eq!(
        tally.errors.get("504 deadline_exceeded"),
        Some(&tally.requests),
        "{:?}",
        tally.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_down_and_back_mid_run_fails_open_and_replays() {
    // DynamoDB (cache, ledger, budgets, idempotency) goes through a proxy that goes down for
    // the middle third of the run; moto keeps its state behind it.
    let moto = Moto::shared();
    let proxy = Proxy::start(moto.url()).await;
    let stack = Stack::start_custom(
        moto.url(),
        EmulatorConfig::builtin(),
        &[("AWS_ENDPOINT_URL_DYNAMODB", proxy.url())],
    )
    .await;
    let s = state(&stack, options());
    let n = 30;
    // Sequential, so "the middle third" is exact.
    let tally = drive(&s, stack.key("acme"), n, 1, |i| {
        proxy.set_up(!(n / 3..2 * n / 3).contains(&i));
    })
    .await;
    proxy.set_up(true);
    let (lost, double, replayed) = audit(&stack, &tally).await;
    report("DynamoDB (moto) down and back", &tally, lost, double);
    assert_eq!(tally.served, n, "{:?}", tally.errors);
    // The records of the outage went through the spill queue.
    assert_eq!(replayed, (n / 3) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_unavailable_after_warm_up_serves_the_last_known_configuration() {
    let moto = Moto::shared();
    let proxy = Proxy::start(moto.url()).await;
    let stack = Stack::start_custom(
        moto.url(),
        EmulatorConfig::builtin(),
        &[("AWS_ENDPOINT_URL_SSM", proxy.url())],
    )
    .await;
    // Configuration is re-read on every request, so every request after warm-up meets the
    // outage.
    let s = state(&stack, options());
    let n = 24;
    let tally = drive(&s, stack.key("acme"), n, 4, |i| proxy.set_up(i < 4)).await;
    // The outage is real: a cold instance, with no configuration to fall back on, is refused.
    let cold = state(&stack, options());
    let r = chat(
        &cold,
        stack.key("acme"),
        json!({"messages": [{"role": "user", "content": "cold"}]}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["type"].as_str()),
        (503, Some("configuration_unavailable")),
        "{}",
        r.body
    );
    proxy.set_up(true);
    let (lost, double, _) = audit(&stack, &tally).await;
    report("SSM unavailable after warm-up", &tally, lost, double);
    assert_eq!(tally.served, n, "{:?}", tally.errors);
}
