//! Batch semantics against moto and the emulator: idempotency under redelivery, leases,
//! throttling, poison messages, the time budget, exact counts and cost, results messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use batch_worker::poller::{EventSourceMapping, MappingOptions};
use batch_worker::{Worker, WorkerOptions};
use quarry_aws::jobs::DynamoJobs;
use quarry_core::invoke::RetryPolicy;
use quarry_core::jobs::{ItemClaim, ItemRef, ItemStatus};
use quarry_core::ports::{JobStore, Quarantine};
use quarry_testkit::{Stack, eventually};
use serde_json::{Value, json};

fn options() -> WorkerOptions {
    WorkerOptions {
        deadline_margin: Duration::from_millis(200),
        min_item_time: Duration::from_millis(300),
        retry: RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            min_attempt_time: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..WorkerOptions::default()
    }
}

fn item(job: &str, id: &str, text: &str) -> String {
    json!({
        "schema_version": 1, "job_id": job, "item_id": id, "tenant": "acme",
        "messages": [{"role": "user", "content": text}], "tier": "batch", "tags": {"feature": "digest"}
    })
    .to_string()
}

fn event(bodies: &[(&str, String)]) -> SqsEvent {
    let mut e = SqsEvent::default();
    for (id, body) in bodies {
        let mut m = SqsMessage::default();
        m.message_id = Some((*id).into());
        m.body = Some(body.clone());
        m.attributes
            .insert("SenderId".into(), "AIDAEXAMPLEPRODUCER".into());
        e.records.push(m);
    }
    e
}

/// The messages quarantined today, by message ID.
async fn quarantined(stack: &Stack) -> Vec<quarry_core::jobs::Quarantined> {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    Quarantine::held(&jobs(stack), &today).await.unwrap()
}

fn deadline(secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(secs)
}

fn failures(r: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

fn jobs(stack: &Stack) -> DynamoJobs {
    DynamoJobs::new(&stack.sdk, &stack.settings.jobs_table)
}

#[tokio::test]
async fn the_same_message_delivered_twice_is_one_model_call_and_one_charge() {
    let stack = Stack::start().await;
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, options());
    let e = event(&[("m1", item("job-dup", "i1", "Summarize: dupes"))]);
    assert!(failures(&worker.handle(e.clone(), deadline(30)).await).is_empty());
    assert!(failures(&worker.handle(e, deadline(30)).await).is_empty());
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 1);
    let counts = jobs(&stack)
        .counts("acme", "job-dup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (counts.submitted, counts.succeeded, counts.failed),
        (1, 1, 0)
    );
    let items = jobs(&stack).items("acme", "job-dup").await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].attempts, 1);
    assert_eq!(counts.cost, items[0].result.as_ref().unwrap().cost.unwrap());
}

#[tokio::test]
async fn an_item_under_a_live_lease_waits_and_a_crashed_lease_expires() {
    let stack = Stack::start().await;
    // Leases are written and read against this clock: the test moves it instead of sleeping.
    let clock = Arc::new(quarry_core::ports::ManualClock::new());
    let ports = quarry_aws::ports_from_sdk(&stack.sdk, &stack.settings).with_clock(clock.clone());
    let store = ports.jobs();
    let item_ref = ItemRef {
        tenant: "acme".into(),
        job_id: "job-lease".into(),
        item_id: "i1".into(),
    };
    // Another invocation holds it (and then crashes: it never completes).
    assert_eq!(
        store
            .claim(&item_ref, "crashed-worker", Duration::from_secs(2))
            .await
            .unwrap(),
        ItemClaim::Run { attempt: 1 }
    );
    let worker = Worker::with_ports(
        batch_worker::WorkerPorts::from_sdk_ports(&ports, None),
        &stack.settings,
        options(),
    );
    let e = event(&[("m1", item("job-lease", "i1", "hello"))]);
    assert_eq!(
        failures(&worker.handle(e.clone(), deadline(30)).await),
        ["m1"],
        "not run twice at once"
    );
    assert_eq!(stack.model_calls(), 0);
    clock.advance(Duration::from_secs(3));
    assert!(
        failures(&worker.handle(e, deadline(30)).await).is_empty(),
        "the expired lease is taken over"
    );
    assert_eq!(stack.model_calls(), 1);
    let items = store.items("acme", "job-lease").await.unwrap();
    assert_eq!(
        (items[0].status, items[0].attempts),
        (ItemStatus::Succeeded, 2)
    );
    let counts = store.counts("acme", "job-lease").await.unwrap().unwrap();
    assert_eq!((counts.submitted, counts.succeeded), (1, 1));
}

#[tokio::test]
async fn poison_messages_are_recorded_failed_with_their_reason_and_acknowledged() {
    let stack = Stack::start().await;
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, options());
    let bad_version =
        json!({"schema_version": 7, "job_id": "job-poison", "item_id": "v7", "tenant": "acme"})
            .to_string();
    let unknown_prompt = json!({"schema_version": 1, "job_id": "job-poison", "item_id": "np", "tenant": "acme", "prompt": "nope"}).to_string();
    let missing_vars = json!({"schema_version": 1, "job_id": "job-poison", "item_id": "mv", "tenant": "acme", "prompt": "summarize"}).to_string();
    let e = event(&[
        ("a", "{not json".into()),
        ("b", bad_version),
        ("c", unknown_prompt),
        ("d", missing_vars),
    ]);
    let r = worker.handle(e, deadline(30)).await;
    assert!(
        failures(&r).is_empty(),
        "poison is acknowledged, not retried: {:?}",
        failures(&r)
    );
    assert_eq!(stack.model_calls(), 0);
    // Valid messages of an allowed producer that fail later: under their job.
    let items = jobs(&stack).items("acme", "job-poison").await.unwrap();
    let reason = |id: &str| {
        items
            .iter()
            .find(|i| i.item_id == id)
            .unwrap()
            .reason
            .clone()
            .unwrap()
    };
    assert!(
        reason("np").contains("unknown prompt 'nope'"),
        "{}",
        reason("np")
    );
    assert!(reason("mv").contains("missing: text"), "{}", reason("mv"));
    assert!(items.iter().all(|i| i.status == ItemStatus::Failed));
    let counts = jobs(&stack)
        .counts("acme", "job-poison")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counts.submitted, counts.failed), (2, 2));
    // Invalid messages: quarantined, never written under the job they name.
    assert!(items.iter().all(|i| i.item_id != "v7"));
    let held = quarantined(&stack).await;
    let held_reason = |id: &str| {
        held.iter()
            .find(|q| q.message_id == id)
            .unwrap()
            .reason
            .clone()
    };
    assert!(
        held_reason("a").contains("not JSON"),
        "{}",
        held_reason("a")
    );
    assert!(
        held_reason("b").contains("schema_version 7"),
        "{}",
        held_reason("b")
    );
    let b = held.iter().find(|q| q.message_id == "b").unwrap();
    assert_eq!(b.claimed.as_deref(), Some("acme/job-poison/v7"));
    assert_eq!(b.sender.as_deref(), Some("AIDAEXAMPLEPRODUCER"));
    assert!(b.body.contains("\"schema_version\":7"));
}

#[tokio::test]
async fn a_tenant_the_producer_may_not_speak_for_is_refused() {
    let stack = Stack::start().await;
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    let mut dir: quarry_core::tenancy::TenantDirectory = serde_json::from_str(
        &quarry_core::ports::ParameterStore::get(&ssm, &stack.settings.param("tenants"), true)
            .await
            .unwrap()
            .value,
    )
    .unwrap();
    dir.tenants.get_mut("acme").unwrap().batch_senders = vec!["AIDAONLYTHISONE".into()];
    quarry_admin::tenants::write(&ssm, &stack.settings, &dir)
        .await
        .unwrap();
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, options());
    let r = worker
        .handle(event(&[("m1", item("job-auth", "i1", "hi"))]), deadline(30))
        .await;
    assert!(failures(&r).is_empty());
    assert_eq!(stack.model_calls(), 0);
    // Nothing written under acme: the refusal is in the quarantine.
    assert!(
        jobs(&stack)
            .items("acme", "job-auth")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        jobs(&stack)
            .counts("acme", "job-auth")
            .await
            .unwrap()
            .is_none()
    );
    let held = quarantined(&stack).await;
    assert_eq!(held.len(), 1);
    assert!(
        held[0].reason.contains("tenant_not_allowed"),
        "{:?}",
        held[0]
    );
    assert_eq!(held[0].claimed.as_deref(), Some("acme/job-auth/i1"));

    // The tenant's own producer sends the same item: it runs.
    let mut own = event(&[("m2", item("job-auth", "i1", "hi"))]);
    own.records[0]
        .attributes
        .insert("SenderId".into(), "AIDAONLYTHISONE".into());
    let r = worker.handle(own, deadline(30)).await;
    assert!(failures(&r).is_empty());
    let items = jobs(&stack).items("acme", "job-auth").await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, ItemStatus::Succeeded, "{:?}", items[0]);
    assert_eq!(stack.model_calls(), 1);
}

#[tokio::test]
async fn a_batch_larger_than_the_time_budget_returns_the_unfinished_items_none_half_done() {
    let stack = Stack::start().await;
    stack.emulator.state().config_mut().latency = bedrock_emulator::Latency {
        ttft_ms: 400,
        per_token_ms: 0,
    };
    let worker = Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            concurrency: 2,
            ..options()
        },
    );
    let bodies: Vec<(String, String)> = (0..10)
        .map(|i| {
            (
                format!("m{i}"),
                item("job-budget", &format!("i{i}"), &format!("item {i}")),
            )
        })
        .collect();
    let refs: Vec<(&str, String)> = bodies
        .iter()
        .map(|(id, b)| (id.as_str(), b.clone()))
        .collect();
    // 1.5 s for ten 0.4 s items two at a time: some finish, the rest go back.
    let r = worker
        .handle(
            event(&refs),
            tokio::time::Instant::now() + Duration::from_millis(1500),
        )
        .await;
    let returned = failures(&r);
    assert!(!returned.is_empty() && returned.len() < 10, "{returned:?}");
    let items = jobs(&stack).items("acme", "job-budget").await.unwrap();
    for i in 0..10 {
        let id = format!("i{i}");
        let record = items.iter().find(|r| r.item_id == id);
        let was_returned = returned.contains(&format!("m{i}"));
        match record.map(|r| r.status) {
            Some(ItemStatus::Succeeded) => {
                assert!(!was_returned, "{id} succeeded but was returned")
            }
            Some(ItemStatus::Retry) | None => {
                assert!(was_returned, "{id} is unfinished but was acknowledged")
            }
            other => panic!("{id} left half-done: {other:?}"),
        }
    }
    let counts = jobs(&stack)
        .counts("acme", "job-budget")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.succeeded as usize, 10 - returned.len());
}

#[tokio::test]
async fn thirty_percent_throttling_every_item_succeeds_once_with_exact_counts_and_cost() {
    let stack = Stack::start().await;
    stack
        .emulator
        .state()
        .update_faults(|f| f.entry("*".into()).or_default().throttle_probability = 0.3);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue = stack.provisioned.batch_queue_url.clone();
    let n = 20;
    for i in 0..n {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(item("job-throttle", &format!("i{i}"), &format!("text {i}")))
            .send()
            .await
            .unwrap();
    }
    let worker = Arc::new(Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            retry: RetryPolicy {
                max_attempts_per_model: 2,
                ..options().retry
            },
            ..options()
        },
    ));
    let arn = quarry_aws::queues::queue_arn(&sqs, &queue).await.unwrap();
    let mapping = EventSourceMapping::new(
        sqs,
        queue,
        arn,
        worker,
        MappingOptions {
            visibility_timeout: 1,
            wait_seconds: 0,
            ..MappingOptions::default()
        },
    );
    let store = jobs(&stack);
    let done = eventually(Duration::from_secs(90), || async {
        let _ = mapping.poll_once().await;
        let c = store.counts("acme", "job-throttle").await.ok()??;
        (c.succeeded == n).then_some(c)
    })
    .await
    .expect("every item eventually succeeds");
    assert_eq!((done.submitted, done.failed), (n, 0));
    // One answered call per item: none charged twice.
    let emulator = stack.emulator.state();
    let answered: u64 = emulator
        .counters()
        .values()
        .map(|c| c.calls - c.errors)
        .sum();
    assert_eq!(answered, n, "successful model calls");
    assert!(
        emulator.counters().values().map(|c| c.errors).sum::<u64>() > 0,
        "the emulator did throttle"
    );
    let items = store.items("acme", "job-throttle").await.unwrap();
    let total: u64 = items
        .iter()
        .map(|i| i.result.as_ref().unwrap().cost.unwrap().0)
        .sum();
    assert_eq!(
        done.cost.0, total,
        "the header's cost is the sum of the items' costs"
    );
}

#[tokio::test]
async fn counts_cost_and_results_messages_after_a_mixed_run() {
    let stack = Stack::start().await;
    let worker = Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            results_queue: Some(stack.provisioned.results_queue_url.clone()),
            ..options()
        },
    );
    jobs(&stack).expect("acme", "job-mix", 4).await.unwrap();
    // nova-micro throttles once: the first delivery of that item fails and comes back.
    stack.emulator.state().update_faults(|f| {
        f.entry("amazon.nova-micro-v1:0".into())
            .or_default()
            .throttle_next = 1
    });
    let once = WorkerOptions {
        retry: RetryPolicy {
            max_attempts_per_model: 1,
            ..options().retry
        },
        ..options()
    };
    let strict = Worker::from_sdk(
        &stack.sdk,
        &stack.settings,
        WorkerOptions {
            results_queue: worker.options().results_queue.clone(),
            ..once
        },
    );
    let model_item = |id: &str, model: &str| {
        json!({"schema_version": 1, "job_id": "job-mix", "item_id": id, "tenant": "acme", "messages": [{"role": "user", "content": id}], "model": model}).to_string()
    };
    let e = event(&[
        ("a", model_item("ok-1", "amazon.nova-lite-v1:0")),
        ("b", model_item("ok-2", "amazon.nova-lite-v1:0")),
        ("c", model_item("throttled", "amazon.nova-micro-v1:0")),
        ("d", json!({"schema_version": 1, "job_id": "job-mix", "item_id": "poison", "tenant": "acme", "prompt": "nope"}).to_string()),
    ]);
    let first = strict.handle(e.clone(), deadline(30)).await;
    assert_eq!(failures(&first), ["c"]);
    let second = strict
        .handle(
            event(&[("c", model_item("throttled", "amazon.nova-micro-v1:0"))]),
            deadline(30),
        )
        .await;
    assert!(failures(&second).is_empty());
    // Redelivering everything changes nothing.
    assert!(failures(&strict.handle(e, deadline(30)).await).is_empty());

    let store = jobs(&stack);
    let counts = store.counts("acme", "job-mix").await.unwrap().unwrap();
    assert_eq!(
        (
            counts.submitted,
            counts.succeeded,
            counts.failed,
            counts.in_flight()
        ),
        (4, 3, 1, 0)
    );
    let items = store.items("acme", "job-mix").await.unwrap();
    let total: u64 = items
        .iter()
        .filter_map(|i| i.result.as_ref())
        .map(|r| r.cost.unwrap().0)
        .sum();
    assert_eq!(counts.cost.0, total);
    assert_eq!(
        items
            .iter()
            .find(|i| i.item_id == "throttled")
            .unwrap()
            .attempts,
        2
    );

    // One results message per item, one for the finished job.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let mut messages: Vec<Value> = Vec::new();
    for _ in 0..5 {
        let out = sqs
            .receive_message()
            .queue_url(&stack.provisioned.results_queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        messages.extend(
            out.messages()
                .iter()
                .map(|m| serde_json::from_str(m.body().unwrap()).unwrap()),
        );
    }
    let item_messages = messages.iter().filter(|m| m["type"] == "item").count();
    let job_messages: Vec<&Value> = messages.iter().filter(|m| m["type"] == "job").collect();
    assert_eq!(item_messages, 4, "{messages:?}");
    assert_eq!(job_messages.len(), 1, "{messages:?}");
    assert_eq!(job_messages[0]["counts"]["succeeded"], 3);
}

/// Every key built from a message's IDs holds at their longest: a 64-character tenant, a
/// 128-character job and item (DynamoDB keys `JOB#{tenant}#{job}`, `ITEM#{item}`, the ledger's
/// tenant keys and hashed marker).
#[tokio::test]
async fn ids_at_their_longest_are_stored_and_charged() {
    let stack = Stack::start().await;
    let tenant = "t".repeat(64);
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    let mut dir: quarry_core::tenancy::TenantDirectory = serde_json::from_str(
        &quarry_core::ports::ParameterStore::get(&ssm, &stack.settings.param("tenants"), true)
            .await
            .unwrap()
            .value,
    )
    .unwrap();
    let mut policy = dir.tenants["acme"].clone();
    policy.batch_senders = vec!["*".into()];
    dir.tenants.insert(tenant.clone(), policy);
    quarry_admin::tenants::write(&ssm, &stack.settings, &dir)
        .await
        .unwrap();
    let (job, item_id) = ("j".repeat(128), "i:".repeat(64));
    let body = json!({
        "schema_version": 1, "job_id": job, "item_id": item_id, "tenant": tenant,
        "messages": [{"role": "user", "content": "hi"}], "tags": {"feature": "f".repeat(128)}
    })
    .to_string();
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, options());
    let r = worker.handle(event(&[("m1", body)]), deadline(30)).await;
    assert!(failures(&r).is_empty(), "{:?}", failures(&r));
    let items = jobs(&stack).items(&tenant, &job).await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, ItemStatus::Succeeded, "{:?}", items[0]);
    let ledger = stack.ledger();
    let month = quarry_aws::ledger::Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let total = ledger
        .get(&quarry_aws::ledger::month_pk(&tenant, &month), "TOTAL")
        .await
        .unwrap();
    assert_eq!(total.requests, 1);
}

#[tokio::test]
async fn batch_items_run_on_flex_and_a_throttled_flex_call_is_retried_at_standard() {
    let stack = Stack::start().await;
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, options());
    let emu = stack.emulator.state();
    let tier_sent = |n: usize| -> Value {
        let converse: Vec<Value> = emu
            .recorded(200)
            .into_iter()
            .filter(|r| r.operation == "Converse")
            .map(|r| r.body)
            .collect();
        converse[n]["serviceTier"].clone()
    };

    // The batch tier's default (routing.yaml `tier_service_tiers`): flex, charged at flex.
    let e = event(&[("m1", item("job-flex", "i1", "Summarize: flex"))]);
    assert!(failures(&worker.handle(e, deadline(30)).await).is_empty());
    assert_eq!(tier_sent(0), json!({"type": "flex"}));
    let items = jobs(&stack).items("acme", "job-flex").await.unwrap();
    let result = items[0].result.clone().unwrap();
    assert_eq!(
        result.service_tier,
        Some(quarry_core::model::ServiceTier::Flex)
    );
    let pricing =
        quarry_admin::infra::InfraSources::load(&quarry_testkit::workspace_root().join("infra"))
            .unwrap()
            .pricing;
    // The batch tier's models are plain model IDs: the base model is the ID itself.
    let base = result.model.as_str();
    assert!(!base.starts_with("us."), "{base}");
    let priced = |tier| match pricing.cost_in_tier(base, &result.usage, tier) {
        quarry_core::pricing::Priced::Cost(c) => c,
        quarry_core::pricing::Priced::Unpriced => panic!("{base} unpriced"),
    };
    assert_eq!(
        result.cost,
        Some(priced(Some(quarry_core::model::ServiceTier::Flex)))
    );
    assert!(priced(Some(quarry_core::model::ServiceTier::Flex)) < priced(None));

    // Flex throttled: the same model at standard, at once, before the item's deadline.
    let model = result.model.clone();
    stack
        .emulator
        .state()
        .update_faults(|f| f.entry(model.clone()).or_default().throttle_next = 1);
    let e = event(&[("m2", item("job-flex", "i2", "Summarize: throttled"))]);
    assert!(failures(&worker.handle(e, deadline(30)).await).is_empty());
    assert_eq!(tier_sent(1), json!({"type": "flex"}));
    // Standard: no `serviceTier` (Bedrock's default).
    assert_eq!(tier_sent(2), Value::Null);
    let items = jobs(&stack).items("acme", "job-flex").await.unwrap();
    let second = items.iter().find(|i| i.item_id == "i2").unwrap();
    let result = second.result.clone().unwrap();
    assert_eq!(
        result.service_tier,
        Some(quarry_core::model::ServiceTier::Default)
    );
    assert_eq!(result.model, items[0].result.as_ref().unwrap().model);

    // A job that must not wait names standard.
    let mut body: Value = serde_json::from_str(&item("job-std", "i1", "Summarize: now")).unwrap();
    body["service_tier"] = json!("standard");
    let e = event(&[("m3", body.to_string())]);
    assert!(failures(&worker.handle(e, deadline(30)).await).is_empty());
    assert_ne!(tier_sent(3)["type"], "flex");
}
