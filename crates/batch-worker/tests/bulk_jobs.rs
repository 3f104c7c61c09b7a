//! Bulk jobs end to end on moto and the emulator: a job header decides the mode, the worker
//! keeps a bulk job's items, the tracker renders, reserves, submits, polls and settles them
//! at the batch price; cancel, failed records run online, budget reservations and a tracker
//! restarted halfway.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use batch_worker::bulk::{Tracker, TrackerOptions};
use batch_worker::{Worker, WorkerOptions};
use bedrock_emulator::EmulatorConfig;
use quarry_aws::jobs::DynamoJobs;
use quarry_aws::ledger::month_pk;
use quarry_core::bulk::{BulkJob, BulkPhase, BulkState};
use quarry_core::jobs::ItemStatus;
use quarry_core::ports::{BulkInference, BulkJobs, JobStore, Reservations};
use quarry_core::pricing::{MicroUsd, Priced};
use quarry_testkit::{Moto, Stack, eventually};
use serde_json::json;

const MODEL: &str = "amazon.nova-micro-v1:0";

fn header(job: &str, items: u64, mode: &str) -> String {
    json!({"schema_version": 1, "job_id": job, "tenant": "acme", "job": {"items": items, "mode": mode}})
        .to_string()
}

fn item(job: &str, n: usize) -> String {
    json!({
        "schema_version": 1, "job_id": job, "item_id": format!("i{n:03}"), "tenant": "acme",
        "messages": [{"role": "user", "content": format!("Summarize item {n}: the quarterly numbers.")}],
        "tier": "batch", "max_tokens": 200, "tags": {"feature": "digest"}
    })
    .to_string()
}

fn event(bodies: &[String]) -> SqsEvent {
    let mut e = SqsEvent::default();
    for (n, body) in bodies.iter().enumerate() {
        let mut m = SqsMessage::default();
        m.message_id = Some(format!("m{n}"));
        m.body = Some(body.clone());
        m.attributes
            .insert("SenderId".into(), "AIDAEXAMPLEPRODUCER".into());
        e.records.push(m);
    }
    e
}

/// Delivers messages as the event source mapping would, ten at a time.
async fn deliver(worker: &Worker, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let response = worker.handle(event(chunk), deadline).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
    }
}

fn worker(stack: &Stack) -> Worker {
    let options = WorkerOptions {
        config_max_age: Duration::ZERO,
        ..WorkerOptions::default()
    };
    Worker::from_sdk(&stack.sdk, &stack.settings, options)
}

fn tracker(stack: &Stack) -> Tracker {
    let options = TrackerOptions {
        bucket: stack.settings.batch_bucket.clone(),
        role_arn: Some("arn:aws:iam::123456789012:role/quarry-test-batch".into()),
        poll_secs: Some(0),
        config_max_age: Duration::ZERO,
        ..TrackerOptions::default()
    };
    Tracker::from_sdk(&stack.sdk, &stack.settings, options, None)
}

fn jobs(stack: &Stack) -> DynamoJobs {
    DynamoJobs::new(&stack.sdk, &stack.settings.jobs_table)
}

async fn tracked(stack: &Stack, job: &str) -> BulkJob {
    jobs(stack).tracked("acme", job).await.unwrap().unwrap()
}

/// Runs the tracker until the job reaches `phase`.
async fn run_until(stack: &Stack, tracker: &Tracker, job: &str, phase: BulkPhase) -> BulkJob {
    eventually(Duration::from_secs(60), || async {
        let run = tracker
            .run(tokio::time::Instant::now() + Duration::from_secs(60))
            .await;
        assert!(run.errors.is_empty(), "{:?}", run.errors);
        let now = tracked(stack, job).await;
        (now.phase == phase).then_some(now)
    })
    .await
    .unwrap_or_else(|| panic!("job {job} never reached {phase:?}"))
}

async fn month_cost(stack: &Stack) -> (u64, u64) {
    let reader = stack.ledger();
    let totals = reader
        .get(
            &month_pk("acme", &quarry_aws::budgets::current_month()),
            "TOTAL",
        )
        .await
        .unwrap();
    (totals.requests, totals.cost_micro)
}

/// Messages the tracker sent back to the batch queue (items that run online after all).
async fn requeued(stack: &Stack) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let url = quarry_aws::queues::queue_url(&sqs, &stack.settings.batch_queue)
        .await
        .unwrap();
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            return bodies;
        }
        for m in out.messages() {
            bodies.push(m.body().unwrap().to_owned());
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn set_budget(stack: &Stack, monthly_usd: &str) {
    let budgets = json!({"tenants": {"acme": {"monthly_usd": monthly_usd, "action": "block"}}});
    aws_sdk_ssm::Client::new(&stack.sdk)
        .put_parameter()
        .name(format!("{}/budgets", stack.settings.param_prefix))
        .value(budgets.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_120_item_job_runs_in_bulk_at_the_batch_price_and_the_ledger_equals_the_sum() {
    let stack = Stack::start().await;
    let worker = worker(&stack);
    let mut bodies = vec![header("big", 120, "auto")];
    bodies.extend((0..120).map(|n| item("big", n)));
    deliver(&worker, &bodies).await;
    // Kept for the bulk job, not run: no on-demand call.
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 0);
    let counts = jobs(&stack).counts("acme", "big").await.unwrap().unwrap();
    assert_eq!((counts.submitted, counts.in_flight()), (120, 120));
    // A redelivered item changes nothing.
    deliver(&worker, &[item("big", 7)]).await;

    let job = run_until(&stack, &tracker(&stack), "big", BulkPhase::Settled).await;
    assert_eq!(job.bedrock_state, Some(BulkState::Completed));
    assert_eq!((job.records, job.online), (120, 0));
    assert_eq!(job.model.as_deref(), Some(MODEL));
    assert!(job.job_arn.unwrap().contains(":model-invocation-job/"));
    assert_eq!(job.manifest.unwrap().success_record_count, 120);
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 0);

    let items = jobs(&stack).items("acme", "big").await.unwrap();
    assert_eq!(items.len(), 120);
    let pricing =
        quarry_admin::infra::InfraSources::load(&quarry_testkit::workspace_root().join("infra"))
            .unwrap()
            .pricing;
    let mut sum = MicroUsd::ZERO;
    for i in &items {
        assert_eq!(i.status, ItemStatus::Succeeded, "{i:?}");
        let r = i.result.as_ref().unwrap();
        assert!(!r.output.is_empty() && r.usage.input > 0 && r.usage.output > 0);
        let Priced::Cost(at_batch) = pricing.cost_in_batch(MODEL, &r.usage) else {
            panic!("unpriced");
        };
        let Priced::Cost(on_demand) = pricing.cost(MODEL, &r.usage) else {
            panic!("unpriced");
        };
        assert_eq!(r.cost, Some(at_batch), "{}", i.item_id);
        assert!(at_batch < on_demand);
        sum = sum + at_batch;
    }
    let counts = jobs(&stack).counts("acme", "big").await.unwrap().unwrap();
    assert_eq!(
        (counts.succeeded, counts.failed, counts.in_flight()),
        (120, 0, 0)
    );
    assert_eq!(counts.cost, sum);
    assert_eq!(month_cost(&stack).await, (120, sum.0));
    // The hold is released once the results are charged.
    let budgets = quarry_aws::budgets::DynamoBudgets::new(&stack.sdk, &stack.settings.usage_table);
    assert_eq!(budgets.reserved("acme").await.unwrap(), MicroUsd::ZERO);
}

#[tokio::test]
async fn a_10_item_job_runs_online() {
    let stack = Stack::start().await;
    let worker = worker(&stack);
    let mut bodies = vec![header("small", 10, "auto")];
    bodies.extend((0..10).map(|n| item("small", n)));
    deliver(&worker, &bodies).await;
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 10);
    let plan = jobs(&stack).plan("acme", "small").await.unwrap().unwrap();
    assert_eq!(plan.mode, quarry_core::bulk::JobMode::Online);
    assert!(plan.reason.contains("at least 100"), "{}", plan.reason);
    assert!(
        jobs(&stack)
            .tracked("acme", "small")
            .await
            .unwrap()
            .is_none()
    );
    let counts = jobs(&stack).counts("acme", "small").await.unwrap().unwrap();
    assert_eq!(counts.succeeded, 10);
}

#[tokio::test]
async fn cancel_stops_the_bedrock_job_and_unfinished_items_fail_as_cancelled() {
    let mut config = EmulatorConfig::builtin();
    // Slow enough to be cancelled while it runs.
    config.batch.step_ms = 3_000;
    let stack = Stack::start_with(Moto::shared().url(), config).await;
    let worker = worker(&stack);
    let mut bodies = vec![header("stop-me", 100, "bulk")];
    bodies.extend((0..100).map(|n| item("stop-me", n)));
    deliver(&worker, &bodies).await;
    let tracker = tracker(&stack);
    let job = eventually(Duration::from_secs(30), || async {
        tracker
            .run(tokio::time::Instant::now() + Duration::from_secs(30))
            .await;
        let job = tracked(&stack, "stop-me").await;
        job.job_arn.is_some().then_some(job)
    })
    .await
    .unwrap();
    // What `quarry batch cancel` does.
    let job_store = jobs(&stack);
    job_store.request_cancel("acme", "stop-me").await.unwrap();
    quarry_aws::bulk::BedrockBulk::new(&stack.sdk)
        .stop(job.job_arn.as_deref().unwrap())
        .await
        .unwrap();
    let job = run_until(&stack, &tracker, "stop-me", BulkPhase::Settled).await;
    assert_eq!(job.bedrock_state, Some(BulkState::Stopped));
    let items = job_store.items("acme", "stop-me").await.unwrap();
    assert_eq!(items.len(), 100);
    assert!(
        items
            .iter()
            .all(|i| i.status == ItemStatus::Failed && i.reason.as_deref() == Some("cancelled"))
    );
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 0);
    assert_eq!(month_cost(&stack).await.1, 0);
}

#[tokio::test]
async fn records_bedrock_fails_with_a_retryable_error_run_online() {
    let mut config = EmulatorConfig::builtin();
    config.batch.faults.fail_record_ids = vec!["i003".into(), "i050".into()];
    config.batch.faults.record_error_code = 500;
    let stack = Stack::start_with(Moto::shared().url(), config).await;
    let worker = worker(&stack);
    let mut bodies = vec![header("flaky", 100, "bulk")];
    bodies.extend((0..100).map(|n| item("flaky", n)));
    deliver(&worker, &bodies).await;
    let job = run_until(&stack, &tracker(&stack), "flaky", BulkPhase::Settled).await;
    assert_eq!(job.online, 2);
    let again = requeued(&stack).await;
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|b| b.contains(r#""mode":"online""#)));
    deliver(&worker, &again).await;
    assert_eq!(stack.emulator.state().calls(Some("Converse"), None), 2);
    let counts = jobs(&stack).counts("acme", "flaky").await.unwrap().unwrap();
    assert_eq!(
        (counts.succeeded, counts.failed, counts.in_flight()),
        (100, 0, 0)
    );
    assert_eq!(month_cost(&stack).await.0, 100);
}

#[tokio::test]
async fn the_budget_reservation_refuses_a_job_that_would_exceed_it() {
    let stack = Stack::start().await;
    // The first job's estimate fits; the two together do not.
    set_budget(&stack, "0.002").await;
    let worker = worker(&stack);
    for job in ["first", "second"] {
        let mut bodies = vec![header(job, 100, "bulk")];
        bodies.extend((0..100).map(|n| item(job, n)));
        deliver(&worker, &bodies).await;
    }
    let tracker = tracker(&stack);
    let first = eventually(Duration::from_secs(30), || async {
        tracker
            .run(tokio::time::Instant::now() + Duration::from_secs(30))
            .await;
        let a = tracked(&stack, "first").await;
        let b = tracked(&stack, "second").await;
        (a.phase != BulkPhase::Collecting && b.phase != BulkPhase::Collecting).then_some((a, b))
    })
    .await
    .unwrap();
    let (a, b) = first;
    // One of the two holds the budget; the other is refused, whichever ran first.
    let (held, refused) = if a.phase == BulkPhase::Refused {
        (b, a)
    } else {
        (a, b)
    };
    assert_eq!(refused.phase, BulkPhase::Refused, "{refused:?}");
    assert!(
        refused.message.as_deref().unwrap().contains("does not fit"),
        "{refused:?}"
    );
    assert!(
        held.reserved > MicroUsd::ZERO && held.job_arn.is_some(),
        "{held:?}"
    );
    let budgets = quarry_aws::budgets::DynamoBudgets::new(&stack.sdk, &stack.settings.usage_table);
    assert_eq!(budgets.reserved("acme").await.unwrap(), held.reserved);
    let items = jobs(&stack).items("acme", &refused.job_id).await.unwrap();
    assert!(items.iter().all(|i| i.status == ItemStatus::Failed
        && i.reason.as_deref().unwrap().starts_with("budget_blocked")));
    // Nothing of the refused job reached Bedrock.
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("CreateModelInvocationJob"), None),
        1
    );
}

#[tokio::test]
async fn a_tracker_restarted_in_the_middle_of_a_job_loses_nothing_and_charges_once() {
    let stack = Stack::start().await;
    let worker = worker(&stack);
    let mut bodies = vec![header("restart", 100, "bulk")];
    bodies.extend((0..100).map(|n| item("restart", n)));
    deliver(&worker, &bodies).await;
    // The first tracker submits the job, then is gone.
    {
        let first = tracker(&stack);
        eventually(Duration::from_secs(30), || async {
            first
                .run(tokio::time::Instant::now() + Duration::from_secs(30))
                .await;
            tracked(&stack, "restart")
                .await
                .job_arn
                .is_some()
                .then_some(())
        })
        .await
        .unwrap();
    }
    // A tracker that stopped while storing an item's outcome left it claimed.
    let crashed = quarry_core::jobs::ItemRef {
        tenant: "acme".into(),
        job_id: "restart".into(),
        item_id: "i005".into(),
    };
    let taken = jobs(&stack)
        .take(&crashed, "tracker-stopped", Duration::from_secs(8))
        .await
        .unwrap();
    assert!(taken.is_some());
    // A new one (another process: another owner) takes it from there: every other item is
    // stored, and the job waits for that claim to expire rather than end without it.
    let second = tracker(&stack);
    let waiting = run_until(&stack, &second, "restart", BulkPhase::Settling).await;
    assert_eq!(waiting.bedrock_state, Some(BulkState::Completed));
    let counts = jobs(&stack)
        .counts("acme", "restart")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counts.succeeded, counts.in_flight()), (99, 1));
    let done = run_until(&stack, &second, "restart", BulkPhase::Settled).await;
    let charged = month_cost(&stack).await;
    assert_eq!(charged.0, 100);
    // A tracker that stopped after storing the results but before recording it settles
    // the same output again: nothing changes.
    let mut replay = done.clone();
    replay.phase = BulkPhase::Settling;
    jobs(&stack).track(&replay).await.unwrap();
    let third = tracker(&stack);
    run_until(&stack, &third, "restart", BulkPhase::Settled).await;
    assert_eq!(month_cost(&stack).await, charged);
    let counts = jobs(&stack)
        .counts("acme", "restart")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counts.succeeded, counts.failed), (100, 0));
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("CreateModelInvocationJob"), None),
        1
    );
}

#[tokio::test]
async fn a_job_bedrock_refuses_runs_online_and_releases_its_hold() {
    let stack = Stack::start().await;
    let worker = worker(&stack);
    let mut bodies = vec![header("refused", 100, "bulk")];
    bodies.extend((0..100).map(|n| item("refused", n)));
    deliver(&worker, &bodies).await;
    // A role Bedrock rejects (ValidationException): the job can never start.
    let options = TrackerOptions {
        bucket: stack.settings.batch_bucket.clone(),
        role_arn: Some("not-a-role".into()),
        poll_secs: Some(0),
        config_max_age: Duration::ZERO,
        ..TrackerOptions::default()
    };
    let tracker = Tracker::from_sdk(&stack.sdk, &stack.settings, options, None);
    let job = run_until(&stack, &tracker, "refused", BulkPhase::Settled).await;
    assert!(job.job_arn.is_none());
    assert!(
        job.message
            .as_deref()
            .unwrap()
            .contains("Bedrock refused the job"),
        "{job:?}"
    );
    assert_eq!((job.online, job.reserved), (100, MicroUsd::ZERO));
    let budgets = quarry_aws::budgets::DynamoBudgets::new(&stack.sdk, &stack.settings.usage_table);
    assert_eq!(budgets.reserved("acme").await.unwrap(), MicroUsd::ZERO);
    let again = requeued(&stack).await;
    assert_eq!(again.len(), 100);
    deliver(&worker, &again).await;
    let counts = jobs(&stack)
        .counts("acme", "refused")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((counts.succeeded, counts.in_flight()), (100, 0));
}
