//! `quarry tenants set --inference-profiles` and `quarry tenants remove` against moto and
//! the emulator: a tagged application inference profile per routed model, the tenant's
//! requests sent through them, and the profiles deleted with the tenant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quarry_testkit::{Stack, json_reply};
use tower::ServiceExt;

fn quarry(stack: &Stack, args: &[&str]) -> (bool, String) {
    let url = stack.emulator.url();
    let mut all = args.to_vec();
    all.extend(["--bedrock-endpoint", url.as_str()]);
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &["tenants"], &all)
}

// The CLI runs as a child process that calls the emulator in this process: the emulator
// needs a worker thread of its own while the test waits for the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_profiles_are_created_used_and_removed() {
    let stack = Stack::start().await;
    let (ok, out) = quarry(&stack, &["set", "acme", "--inference-profiles"]);
    assert!(ok, "{out}");
    let created = stack.emulator.state().profiles().all();
    assert!(!created.is_empty(), "{out}");
    for p in &created {
        let tags = p.tags_json().to_string();
        assert!(
            tags.contains("acme") && tags.contains(&stack.settings.stage),
            "{tags}"
        );
    }
    // Set again: nothing new (each model has its profile).
    let (ok, _) = quarry(&stack, &["set", "acme", "--inference-profiles"]);
    assert!(ok);
    assert_eq!(stack.emulator.state().profiles().all().len(), created.len());

    // acme's requests go through its profile; globex's do not.
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options {
            config_max_age: std::time::Duration::ZERO,
            ..chat_handler::Options::default()
        },
    ));
    for tenant in ["acme", "globex"] {
        let body = serde_json::json!({"messages": [{"role": "user", "content": "Hello"}]});
        let request = http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {}", stack.key(tenant)))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (status, answer) = json_reply(
            chat_handler::app(state.clone())
                .oneshot(request)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let sent = stack.emulator.state().recorded(1)[0].model_id.clone();
        let via_profile = sent.contains(":application-inference-profile/");
        assert_eq!(via_profile, tenant == "acme", "{tenant}: {sent}");
    }

    let (ok, out) = quarry(&stack, &["remove", "acme"]);
    assert!(ok, "{out}");
    assert!(stack.emulator.state().profiles().all().is_empty(), "{out}");
}
