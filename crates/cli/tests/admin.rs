//! The operator's configuration commands against moto: `quarry config push`, `quarry tenants`
//! and `quarry keys`, with the chat API seeing each change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use quarry_testkit::{Stack, json_reply, workspace_root};
use tower::ServiceExt;

fn quarry(stack: &Stack, args: &[&str]) -> (bool, String) {
    let (command, rest) = args.split_first().unwrap();
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &[command], rest)
}

/// `GET /v1/models` with `key`: the status and the tiers listed.
async fn models(state: &Arc<chat_handler::AppState>, key: &str) -> (u16, serde_json::Value) {
    let request = http::Request::get("/v1/models")
        .header("authorization", format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    json_reply(
        chat_handler::app(state.clone())
            .oneshot(request)
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn config_push_tenants_and_key_rotation() {
    let stack = Stack::start().await;
    let infra = workspace_root().join("infra");
    let infra = infra.to_str().unwrap();

    // The stack was seeded from infra/: pushing it again changes nothing.
    let (ok, out) = quarry(&stack, &["config", "push", "--infra", infra]);
    assert!(ok, "{out}");
    assert!(
        out.contains("routing") && out.contains("pricing") && out.contains("budgets"),
        "{out}"
    );
    assert!(out.lines().all(|l| l.contains("unchanged")), "{out}");

    // A broken source is refused before anything is written.
    let broken = std::env::temp_dir().join(format!("quarry-infra-{}", stack.settings.stage));
    let copy = std::process::Command::new("cp")
        .args(["-r", infra])
        .arg(&broken)
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::write(broken.join("routing.yaml"), "tiers: [not, a, map]\n").unwrap();
    let (ok, out) = quarry(
        &stack,
        &["config", "push", "--infra", broken.to_str().unwrap()],
    );
    assert!(!ok && out.contains("routing"), "{out}");
    let (ok, out) = quarry(&stack, &["config", "push", "--infra", infra]);
    assert!(ok && out.lines().all(|l| l.contains("unchanged")), "{out}");

    // A new tenant limited to one tier, and a key for it.
    let (ok, out) = quarry(
        &stack,
        &["keys", "create", "initech", "--label", "initech-1"],
    );
    assert!(!ok && out.contains("no tenant initech"), "{out}");
    let (ok, out) = quarry(&stack, &["tenants", "set", "initech", "--tiers", "fast"]);
    assert!(ok, "{out}");
    let (ok, out) = quarry(
        &stack,
        &["keys", "create", "initech", "--label", "initech-1"],
    );
    assert!(ok, "{out}");
    let first = out
        .split_whitespace()
        .find(|w| w.starts_with("qk_"))
        .unwrap()
        .to_owned();
    let (ok, out) = quarry(
        &stack,
        &["keys", "create", "initech", "--label", "initech-1"],
    );
    assert!(!ok && out.contains("exists"), "{out}");

    // The key is stored only as its hash, and the listing shows labels, never keys.
    let stored = aws_sdk_ssm::Client::new(&stack.sdk)
        .get_parameter()
        .name(stack.settings.param("tenants"))
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let stored = stored.parameter().unwrap();
    assert_eq!(
        stored.r#type(),
        Some(&aws_sdk_ssm::types::ParameterType::SecureString)
    );
    assert!(!stored.value().unwrap().contains(&first));
    let (ok, out) = quarry(&stack, &["tenants", "list"]);
    assert!(
        ok && out.contains("initech") && out.contains("initech-1") && !out.contains(&first),
        "{out}"
    );

    let options = chat_handler::Options {
        config_max_age: Duration::ZERO,
        ..chat_handler::Options::default()
    };
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        options,
    ));
    let (status, body) = models(&state, &first).await;
    assert_eq!(status, 200, "{body}");
    let tiers: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        tiers.contains(&"fast") && !tiers.contains(&"smart"),
        "{body}"
    );

    // Rotation: a second key, then the first revoked; the second keeps working.
    let (ok, out) = quarry(
        &stack,
        &["keys", "create", "initech", "--label", "initech-2"],
    );
    assert!(ok, "{out}");
    let second = out
        .split_whitespace()
        .find(|w| w.starts_with("qk_"))
        .unwrap()
        .to_owned();
    let (ok, out) = quarry(&stack, &["keys", "revoke", "initech-1"]);
    assert!(ok, "{out}");
    assert_eq!(models(&state, &first).await.0, 401);
    assert_eq!(models(&state, &second).await.0, 200);
    let (ok, out) = quarry(&stack, &["keys", "revoke", "initech-1"]);
    assert!(!ok && out.contains("no key labelled initech-1"), "{out}");

    // Removing the tenant removes its keys.
    let (ok, out) = quarry(&stack, &["tenants", "remove", "initech"]);
    assert!(ok, "{out}");
    assert_eq!(models(&state, &second).await.0, 401);
    std::fs::remove_dir_all(&broken).unwrap();
}

/// `tenants set` merges: a field not named keeps its value, `--clear` removes one, and the
/// change is printed; `tenants list` shows every field.
#[tokio::test]
async fn tenants_set_merges_and_prints_what_changed() {
    let stack = Stack::start().await;
    let (ok, out) = quarry(
        &stack,
        &[
            "tenants",
            "set",
            "merged",
            "--tiers",
            "fast",
            "--models",
            "amazon.nova-lite-v1:0",
            "--batch-senders",
            "AIDAPRODUCER",
        ],
    );
    assert!(ok && out.contains("tenant merged created"), "{out}");
    // Only the rate: the models and senders stay.
    let (ok, out) = quarry(
        &stack,
        &["tenants", "set", "merged", "--requests-per-minute", "600"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("rate_limits: (none) -> "), "{out}");
    assert!(
        !out.contains("allowed_models"),
        "only what changed is printed: {out}"
    );
    let (ok, out) = quarry(
        &stack,
        &[
            "tenants",
            "set",
            "merged",
            "--pii",
            "redact",
            "--denied-words",
            "falcon",
            "--injection",
            "block",
            "--clear",
            "batch-senders",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("batch_senders: [\"AIDAPRODUCER\"] -> (none)"),
        "{out}"
    );
    let (ok, out) = quarry(&stack, &["tenants", "list"]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with("merged:")).unwrap();
    for field in [
        "\"allowed_models\":[\"amazon.nova-lite-v1:0\"]",
        "\"requests_per_minute\":600",
        "\"pii\":\"redact\"",
        "\"denied_words\":[\"falcon\"]",
        "\"injection\":\"block\"",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!line.contains("AIDAPRODUCER"), "{line}");
    // Nothing to change; a bad value changes nothing.
    let (ok, out) = quarry(&stack, &["tenants", "set", "merged", "--pii", "redact"]);
    assert!(ok && out.contains("no change"), "{out}");
    let (ok, out) = quarry(
        &stack,
        &[
            "tenants",
            "set",
            "merged",
            "--bedrock-guardrail",
            "Bad-Id:1",
        ],
    );
    assert!(!ok && out.contains("guardrail id"), "{out}");
    let (ok, out) = quarry(&stack, &["tenants", "set", "a#b"]);
    assert!(!ok && out.contains("tenant name"), "{out}");
}
