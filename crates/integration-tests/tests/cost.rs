//! Cost governance end to end: an exact ledger, budgets that stop spend (402 before any
//! model call), degrade, one notification per crossing, rate limits, and the spill that
//! keeps usage through a DynamoDB outage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use batch_worker::{Worker, WorkerOptions};
use bedrock_emulator::ErrorKind;
use common::{add_tenant, chat, fault, options, state};
use cost_alarm::CostAlarm;
use quarry_aws::ledger::{Buckets, month_pk};
use quarry_testkit::{Moto, Proxy, Stack};
use serde_json::{Value, json};

fn micros(usd: &str) -> u64 {
    quarry_core::pricing::MicroUsd::parse_usd(usd).unwrap().0
}

fn month() -> String {
    Buckets::of(chrono::Utc::now().timestamp_millis()).month
}

fn schedule() -> Value {
    json!({"source": "aws.events", "detail-type": "Scheduled Event"})
}

async fn set_budgets(stack: &Stack, budgets: Value) {
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    ssm.put(
        &stack.settings.param("budgets"),
        &budgets.to_string(),
        false,
    )
    .await
    .unwrap();
}

fn batch_event(tenant: &str, items: &[&str]) -> SqsEvent {
    let mut e = SqsEvent::default();
    for id in items {
        let mut m = SqsMessage::default();
        m.message_id = Some((*id).into());
        m.body = Some(
            json!({"schema_version": 1, "job_id": "job-cost", "item_id": id, "tenant": tenant,
                   "messages": [{"role": "user", "content": id}], "tags": {"feature": "digest"}})
            .to_string(),
        );
        e.records.push(m);
    }
    e
}

#[tokio::test]
async fn the_ledger_equals_the_sum_of_reported_costs_after_a_mixed_run() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let mut reported = 0u64;
    let mut requests = 0u64;
    for (text, temperature) in [("one", 0.7), ("two", 0.0), ("two", 0.0), ("three", 0.2)] {
        let r = chat(&s, key, json!({"messages": [{"role": "user", "content": text}], "temperature": temperature, "tags": {"feature": "chat"}})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        reported += micros(r.body["cost_usd"].as_str().unwrap());
        requests += 1;
    }
    // A fallback: Haiku throttled, Nova answers (the failed attempts cost nothing).
    fault(&stack, "anthropic.claude-3-5-haiku-20241022-v1:0", |f| {
        f.outage = Some(ErrorKind::ThrottlingException)
    });
    let r = chat(
        &s,
        key,
        json!({"messages": [{"role": "user", "content": "fallback"}]}),
    )
    .await;
    assert_eq!(r.body["fallbacks"][0]["reason"], "throttled");
    reported += micros(r.body["cost_usd"].as_str().unwrap());
    requests += 1;
    // Batch items of the same tenant.
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, WorkerOptions::default());
    worker
        .handle(
            batch_event("acme", &["b1", "b2"]),
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await;
    let jobs = quarry_aws::jobs::DynamoJobs::new(&stack.sdk, &stack.settings.jobs_table);
    let counts = quarry_core::ports::JobStore::counts(&jobs, "acme", "job-cost")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.succeeded, 2);
    reported += counts.cost.0;
    requests += 2;

    let ledger = stack.ledger();
    let total = ledger
        .get(&month_pk("acme", &month()), "TOTAL")
        .await
        .unwrap();
    assert_eq!(
        total.cost_micro, reported,
        "ledger total vs the sum of per-response costs"
    );
    assert_eq!(total.requests, requests);
    assert_eq!(
        total.cached_requests, 1,
        "the repeated temperature-0 request was a cache hit"
    );
    // Breakdowns add up to the total.
    let by_model = ledger
        .list(&month_pk("acme", &month()), "MODEL#")
        .await
        .unwrap();
    assert_eq!(
        by_model.iter().map(|(_, t)| t.cost_micro).sum::<u64>(),
        total.cost_micro
    );
    assert!(by_model.iter().any(|(m, _)| m == "amazon.nova-lite-v1:0"));
    let by_feature = ledger
        .list(&month_pk("acme", &month()), "FEATURE#")
        .await
        .unwrap();
    let features: Vec<&str> = by_feature.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(features, ["chat", "digest"]);
}

#[tokio::test]
async fn a_tenant_over_budget_is_blocked_within_one_run_and_refused_before_any_model_call() {
    let stack = Stack::start().await;
    set_budgets(&stack, json!({"tenants": {"globex": {"monthly_usd": "0.0001", "thresholds": [100], "action": "block"}}})).await;
    let s = state(
        &stack,
        chat_handler::Options {
            budget_max_age: Duration::ZERO,
            ..options()
        },
    );
    let key = stack.key("globex");
    for i in 0..3 {
        let r = chat(
            &s,
            key,
            json!({"messages": [{"role": "user", "content": format!("spend {i}")}]}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let alarm = CostAlarm::from_sdk(&stack.sdk, &stack.settings);
    stack.settle().await;
    let summary = alarm.handle(&schedule(), chrono::Utc::now()).await;
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let globex = summary
        .tenants
        .iter()
        .find(|t| t.tenant == "globex")
        .unwrap();
    assert_eq!(globex.level, quarry_core::budget::BudgetLevel::Blocked);

    let before = stack.model_calls();
    let r = chat(
        &s,
        key,
        json!({"messages": [{"role": "user", "content": "one more"}]}),
    )
    .await;
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "budget_exceeded");
    assert_eq!(
        stack.model_calls(),
        before,
        "no model call for a blocked tenant"
    );
    // Other tenants are unaffected.
    assert_eq!(
        chat(
            &s,
            stack.key("acme"),
            json!({"messages": [{"role": "user", "content": "hi"}]})
        )
        .await
        .status,
        200
    );
    // The batch worker refuses the blocked tenant's items too: failed as budget_blocked, acknowledged.
    let worker = Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            budget_max_age: Duration::ZERO,
            ..WorkerOptions::default()
        },
    );
    let response = worker
        .handle(
            batch_event("globex", &["g1"]),
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await;
    assert!(response.batch_item_failures.is_empty());
    let jobs = quarry_aws::jobs::DynamoJobs::new(&stack.sdk, &stack.settings.jobs_table);
    let items = quarry_core::ports::JobStore::items(&jobs, "globex", "job-cost")
        .await
        .unwrap();
    assert_eq!(items[0].reason.as_deref(), Some("budget_blocked"));
}

#[tokio::test]
async fn degrade_switches_the_model_and_each_crossing_notifies_once() {
    let stack = Stack::start().await;
    set_budgets(&stack, json!({"tenants": {"acme": {"monthly_usd": "0.0001", "thresholds": [50, 80, 100], "action": "degrade", "degrade_to": "batch"}}})).await;
    // Notifications land in a queue subscribed to the alerts topic.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let inbox = sqs
        .create_queue()
        .queue_name(format!("{}-inbox", stack.settings.stage))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let inbox_arn = quarry_aws::queues::queue_arn(&sqs, &inbox).await.unwrap();
    let sns = aws_sdk_sns::Client::new(&stack.sdk);
    sns.subscribe()
        .topic_arn(&stack.provisioned.alerts_topic_arn)
        .protocol("sqs")
        .endpoint(&inbox_arn)
        .send()
        .await
        .unwrap();

    let s = state(
        &stack,
        chat_handler::Options {
            budget_max_age: Duration::ZERO,
            ..options()
        },
    );
    let key = stack.key("acme");
    let r = chat(
        &s,
        key,
        json!({"messages": [{"role": "user", "content": "before"}], "tier": "fast"}),
    )
    .await;
    assert_eq!(
        r.body["model"],
        "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    );
    let alarm = CostAlarm::from_sdk(&stack.sdk, &stack.settings);
    stack.settle().await;
    let first = alarm.handle(&schedule(), chrono::Utc::now()).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.notifications.len(), 3, "{:?}", first.notifications);
    stack.settle().await;
    let second = alarm.handle(&schedule(), chrono::Utc::now()).await;
    assert!(
        second.notifications.is_empty(),
        "repeated: {:?}",
        second.notifications
    );

    let r = chat(
        &s,
        key,
        json!({"messages": [{"role": "user", "content": "after"}], "tier": "fast"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["model"], "amazon.nova-micro-v1:0",
        "degraded to the batch tier"
    );
    assert_eq!(r.body["degraded_to"], "batch");

    let mut received: Vec<Value> = Vec::new();
    for _ in 0..5 {
        let out = sqs
            .receive_message()
            .queue_url(&inbox)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            received.push(serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap());
        }
    }
    let mut thresholds: Vec<u64> = received
        .iter()
        .map(|m| m["threshold_percent"].as_u64().unwrap())
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, [50, 80, 100]);
    assert!(
        received
            .iter()
            .all(|m| m["tenant"] == "acme" && m["type"] == "budget_threshold")
    );
}

#[tokio::test]
async fn rate_limits_refuse_with_retry_after() {
    let stack = Stack::start().await;
    let key = add_tenant(
        &stack,
        "metered",
        json!({"rate_limits": {"requests_per_minute": 2}}),
    )
    .await;
    let s = state(&stack, options());
    let ask = || json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5});
    assert_eq!(chat(&s, &key, ask()).await.status, 200);
    assert_eq!(chat(&s, &key, ask()).await.status, 200);
    let r = chat(&s, &key, ask()).await;
    if r.status == 200 {
        // The minute rolled over between requests: the next two fill the new one.
        assert_eq!(chat(&s, &key, ask()).await.status, 200);
        let r = chat(&s, &key, ask()).await;
        assert_eq!(r.status, 429);
    } else {
        assert_eq!(r.status, 429, "{}", r.body);
        assert_eq!(r.body["error"]["type"], "rate_limited");
        let after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&after));
    }
    let key = add_tenant(
        &stack,
        "token-metered",
        json!({"rate_limits": {"tokens_per_minute": 10}}),
    )
    .await;
    assert_eq!(chat(&s, &key, ask()).await.status, 200);
    let r = chat(&s, &key, ask()).await;
    assert_eq!(
        r.status, 429,
        "the first request used more than 10 tokens: {}",
        r.body
    );
}

#[tokio::test]
async fn ledger_outage_spills_and_the_replay_counts_everything_once() {
    // DynamoDB goes through a proxy that can go down (moto keeps its state behind it).
    let moto = Moto::shared();
    let proxy = Proxy::start(moto.url()).await;
    let stack = Stack::start_custom(
        moto.url(),
        bedrock_emulator::EmulatorConfig::builtin(),
        &[("AWS_ENDPOINT_URL_DYNAMODB", proxy.url())],
    )
    .await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let mut reported = 0;
    let ask = |t: &str| json!({"messages": [{"role": "user", "content": t}], "temperature": 0.3});
    let r = chat(&s, key, ask("before")).await;
    reported += micros(r.body["cost_usd"].as_str().unwrap());

    proxy.set_up(false);
    for t in ["during-1", "during-2"] {
        let r = chat(&s, key, ask(t)).await;
        assert_eq!(r.status, 200, "the request still succeeds: {}", r.body);
        reported += micros(r.body["cost_usd"].as_str().unwrap());
    }
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let spilled = sqs
        .get_queue_attributes()
        .queue_url(&stack.provisioned.spill_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    assert_eq!(
        spilled.attributes().unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages],
        "2"
    );
    // One spilled record as it is (left visible for the replay below).
    let spilled_record = sqs
        .receive_message()
        .queue_url(&stack.provisioned.spill_queue_url)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap()
        .messages()[0]
        .body()
        .unwrap()
        .to_owned();

    proxy.set_up(true);
    let alarm = CostAlarm::from_sdk(&stack.sdk, &stack.settings);
    stack.settle().await;
    let summary = alarm.handle(&schedule(), chrono::Utc::now()).await;
    assert_eq!(
        (
            summary.replayed,
            summary.replay_duplicates,
            summary.replay_left
        ),
        (2, 0, 0),
        "{:?}",
        summary.errors
    );
    let ledger = stack.ledger();
    let total = ledger
        .get(&month_pk("acme", &month()), "TOTAL")
        .await
        .unwrap();
    assert_eq!((total.requests, total.cost_micro), (3, reported));

    // SQS delivers at least once: a record replayed again is not counted again.
    sqs.send_message()
        .queue_url(&stack.provisioned.spill_queue_url)
        .message_body(spilled_record)
        .send()
        .await
        .unwrap();
    stack.settle().await;
    let summary = alarm.handle(&schedule(), chrono::Utc::now()).await;
    assert_eq!((summary.replayed, summary.replay_duplicates), (0, 1));
    let total = ledger
        .get(&month_pk("acme", &month()), "TOTAL")
        .await
        .unwrap();
    assert_eq!(
        (total.requests, total.cost_micro),
        (3, reported),
        "nothing counted twice"
    );
}

/// A per-feature limit is not dodged by renaming the feature or leaving it out: spend under
/// no configured feature has what the monthly limit leaves after the features'.
#[tokio::test]
async fn renaming_a_feature_does_not_dodge_its_limit() {
    let stack = Stack::start().await;
    // $10 a month, all of it allotted to `chat`: nothing is left for other spend.
    set_budgets(
        &stack,
        json!({"tenants": {"globex": {"monthly_usd": "10", "features": {"chat": "10"}}}}),
    )
    .await;
    let s = state(
        &stack,
        chat_handler::Options {
            budget_max_age: Duration::ZERO,
            ..options()
        },
    );
    let key = stack.key("globex");
    let ask = |feature: Option<&str>| {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
        if let Some(f) = feature {
            body["tags"] = json!({"feature": f});
        }
        body
    };
    assert_eq!(chat(&s, key, ask(Some("renamed"))).await.status, 200);
    stack.settle().await;
    let summary = CostAlarm::from_sdk(&stack.sdk, &stack.settings)
        .handle(&schedule(), chrono::Utc::now())
        .await;
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    for feature in [Some("renamed"), Some("Chat"), None] {
        let r = chat(&s, key, ask(feature)).await;
        assert_eq!(r.status, 402, "{feature:?}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("configured features"),
            "{}",
            r.body
        );
    }
    assert_eq!(chat(&s, key, ask(Some("chat"))).await.status, 200);
}
