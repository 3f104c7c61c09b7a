//! `quarry cost report` against a ledger written by real requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quarry_testkit::{Stack, json_reply};
use tower::ServiceExt;

fn quarry(stack: &Stack, args: &[&str]) -> (bool, String) {
    let args: Vec<&str> = ["report"].into_iter().chain(args.iter().copied()).collect();
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &["cost"], &args)
}

#[tokio::test]
async fn report_as_table_json_and_csv() {
    let stack = Stack::start().await;
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options::default(),
    ));
    let mut total = 0u64;
    for (tenant, feature) in [
        ("acme", "search"),
        ("acme", "summary"),
        ("globex", "search"),
    ] {
        let body = serde_json::json!({"messages": [{"role": "user", "content": format!("{tenant} {feature}")}], "tags": {"feature": feature}});
        let request = http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {}", stack.key(tenant)))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (_, answer) = json_reply(
            chat_handler::app(state.clone())
                .oneshot(request)
                .await
                .unwrap(),
        )
        .await;
        total += quarry_core::pricing::MicroUsd::parse_usd(answer["cost_usd"].as_str().unwrap())
            .unwrap()
            .0;
    }
    let (ok, out) = quarry(&stack, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("acme") && out.contains("globex") && out.contains('█'),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains(&quarry_core::pricing::MicroUsd(total).to_usd_string()),
        "{out}"
    );

    let (ok, out) = quarry(&stack, &["--tenant", "acme", "--by", "feature", "--json"]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["search", "summary"]);

    let (ok, out) = quarry(&stack, &["--by", "model", "--csv"]);
    assert!(ok, "{out}");
    assert!(out.starts_with("tenant,key,requests"), "{out}");
    assert_eq!(
        out.lines().count(),
        3,
        "header + one model per tenant: {out}"
    );

    let (ok, out) = quarry(&stack, &["--month", "2026-13"]);
    assert!(!ok && out.contains("YYYY-MM"), "{out}");
}
