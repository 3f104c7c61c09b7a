//! Per-developer keys: each key's spend in the ledger (`KEY#label`), a per-key monthly limit
//! that blocks one developer and not the others, and the month's report by key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{chat, edit_directory, options, state};
use cost_alarm::CostAlarm;
use quarry_aws::ledger::{Buckets, month_pk};
use quarry_core::tenancy::{KeyEntry, hash_key};
use quarry_testkit::Stack;
use serde_json::json;

#[tokio::test]
async fn a_developer_over_the_per_key_limit_is_refused_alone() {
    let stack = Stack::start().await;
    edit_directory(&stack, |dir| {
        for (key, label) in [("qk_alice_dev", "alice"), ("qk_bob_dev", "bob")] {
            dir.keys.insert(
                hash_key(key),
                KeyEntry {
                    tenant: "acme".into(),
                    admin: false,
                    operator: false,
                    label: Some(label.into()),
                },
            );
        }
    })
    .await;
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    ssm.put(
        &stack.settings.param("budgets"),
        &json!({"tenants": {"acme": {"monthly_usd": "100", "per_key": "0.000010"}}}).to_string(),
        false,
    )
    .await
    .unwrap();
    let s = state(
        &stack,
        chat_handler::Options {
            budget_max_age: Duration::ZERO,
            config_max_age: Duration::ZERO,
            ..options()
        },
    );
    let hello = json!({"messages": [{"role": "user", "content": "Hello there, tell me a story."}]});
    for _ in 0..3 {
        assert_eq!(chat(&s, "qk_alice_dev", hello.clone()).await.status, 200);
    }

    // The ledger has alice's spend under her key.
    let month = Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let keys = stack
        .ledger()
        .list(&month_pk("acme", &month), "KEY#")
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].0, "alice");
    assert_eq!(keys[0].1.requests, 3);

    let alarm = CostAlarm::from_sdk(&stack.sdk, &stack.settings);
    let summary = alarm
        .handle(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            chrono::Utc::now(),
        )
        .await;
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);

    let calls = stack.model_calls();
    let r = chat(&s, "qk_alice_dev", hello.clone()).await;
    assert_eq!(r.status, 402, "{}", r.body);
    assert!(r.body.to_string().contains("'alice'"), "{}", r.body);
    assert_eq!(
        stack.model_calls(),
        calls,
        "no model call for a blocked key"
    );
    // Bob, on the same tenant, carries on.
    assert_eq!(chat(&s, "qk_bob_dev", hello).await.status, 200);

    // Each developer's month, as `quarry cost report --by key` reads it.
    let keys = stack
        .ledger()
        .list(&month_pk("acme", &month), "KEY#")
        .await
        .unwrap();
    let requests: Vec<(&str, u64)> = keys.iter().map(|(k, t)| (k.as_str(), t.requests)).collect();
    assert_eq!(requests, [("alice", 3), ("bob", 1)]);
}
