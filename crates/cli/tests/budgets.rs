//! `quarry budgets`: a tenant crossing its budget, seen by `evaluate` (the transition) and
//! by `status` (the state enforcement acts on).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quarry_testkit::{Stack, json_reply};
use tower::ServiceExt;

fn quarry(stack: &Stack, args: &[&str]) -> (bool, String) {
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &["budgets"], args)
}

#[tokio::test]
async fn a_budget_transition_shows_in_evaluate_and_status() {
    let stack = Stack::start().await;
    quarry_aws::ssm::SsmParams::new(&stack.sdk)
        .put(
            &stack.settings.param("budgets"),
            r#"{"tenants": {"globex": {"monthly_usd": "0.0001", "action": "block"}}}"#,
            false,
        )
        .await
        .unwrap();
    let (ok, out) = quarry(&stack, &["status", "--json"]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let globex = rows.iter().find(|r| r["tenant"] == "globex").unwrap();
    assert_eq!(globex["state"], "ok");

    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options::default(),
    ));
    for i in 0..2 {
        let body =
            serde_json::json!({"messages": [{"role": "user", "content": format!("spend {i}")}]});
        let request = http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {}", stack.key("globex")))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (status, _) = json_reply(
            chat_handler::app(state.clone())
                .oneshot(request)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
    }
    stack.settle().await;
    let (ok, out) = quarry(&stack, &["evaluate"]);
    assert!(ok, "{out}");
    assert!(out.contains("changed  globex: ok -> blocked at "), "{out}");
    // A second run changes nothing.
    let (ok, out) = quarry(&stack, &["evaluate"]);
    assert!(ok && !out.contains("changed"), "{out}");

    let (ok, out) = quarry(&stack, &["status"]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("globex")).unwrap();
    assert!(
        line.contains("blocked") && line.contains("0.000100"),
        "{line}"
    );
}
