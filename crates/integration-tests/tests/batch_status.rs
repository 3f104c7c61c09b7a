//! `GET /v1/batches/{job_id}` on the chat API: a job of the caller's tenant, after the
//! worker ran it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use batch_worker::{Worker, WorkerOptions};
use common::{call, options, state};
use quarry_testkit::Stack;
use serde_json::json;

#[tokio::test]
async fn the_status_of_a_job_of_the_callers_tenant() {
    let stack = Stack::start().await;
    let worker = Worker::from_sdk(&stack.sdk, &stack.settings, WorkerOptions::default());
    let mut event = SqsEvent::default();
    for (id, body) in [
        (
            "i1",
            json!({"messages": [{"role": "user", "content": "one"}]}),
        ),
        (
            "i2",
            json!({"messages": [{"role": "user", "content": "two"}]}),
        ),
        ("i3", json!({"prompt": "nope"})),
    ] {
        let mut b = body;
        b["schema_version"] = json!(1);
        b["job_id"] = json!("job-api");
        b["item_id"] = json!(id);
        b["tenant"] = json!("acme");
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(b.to_string());
        event.records.push(m);
    }
    worker
        .handle(event, tokio::time::Instant::now() + Duration::from_secs(30))
        .await;

    let s = state(&stack, options());
    let r = call(
        &s,
        "GET",
        "/v1/batches/job-api",
        Some(stack.key("acme")),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["job_id"], "job-api");
    assert_eq!(
        r.body["counts"],
        json!({"submitted": 3, "started": 3, "succeeded": 2, "failed": 1, "in_flight": 0})
    );
    assert_eq!(r.body["state"], "done");
    assert_eq!(
        r.body["status"],
        "done: 3 items finished (2 succeeded, 1 failed), 0 in flight"
    );
    assert!(r.body["cost_usd"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
    assert_eq!(r.body["failures"][0]["item_id"], "i3");
    assert!(
        r.body["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown prompt")
    );
    // Another tenant does not see it.
    let r = call(
        &s,
        "GET",
        "/v1/batches/job-api",
        Some(stack.key("globex")),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(&s, "GET", "/v1/batches/job-api", None, None).await;
    assert_eq!(r.status, 401);
}
