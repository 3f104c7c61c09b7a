//! Prompts as versioned configuration, observed through the chat API: push, promote,
//! serve, roll back, serve again; the last-known-good copy when SSM fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{chat, options, state};
use quarry_admin::infra::push_prompts;
use quarry_admin::prompt_admin::PromptAdmin;
use quarry_aws::ssm::SsmParams;
use quarry_core::prompts::PromptSpec;
use quarry_testkit::{Moto, Stack};
use serde_json::{Value, json};

fn spec(greeting: &str) -> PromptSpec {
    serde_json::from_value(json!({
        "name": "greet",
        "system": "You greet people.",
        "template": format!("{greeting}, {{{{ who }}}}!"),
        "tier": "fast",
        "variables": {"who": {"type": "string"}}
    }))
    .unwrap()
}

fn ask(extra: Value) -> Value {
    let mut body = json!({"prompt": "greet", "variables": {"who": "Ada"}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The user text the emulator received last.
fn last_prompt_text(stack: &Stack) -> String {
    let recorded = stack.emulator.state().recorded(1);
    recorded[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn pushed_promoted_served_rolled_back_served_again() {
    let stack = Stack::start().await;
    let ssm = SsmParams::new(&stack.sdk);
    let admin = PromptAdmin::new(&ssm, &stack.settings);
    let s = state(&stack, options());
    let key = stack.key("acme");

    // v1 pushed: with no `prod` label yet, the latest version serves.
    let pushed = push_prompts(&ssm, &stack.settings, &[spec("Hello")])
        .await
        .unwrap();
    assert_eq!((pushed[0].version, pushed[0].changed), (1, true));
    let r = chat(&s, key, ask(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["prompt"]["version"], 1);
    assert_eq!(last_prompt_text(&stack), "Hello, Ada!");

    // Pushing the same prompt again changes nothing; a changed one is v2.
    assert!(
        !push_prompts(&ssm, &stack.settings, &[spec("Hello")])
            .await
            .unwrap()[0]
            .changed
    );
    assert_eq!(
        push_prompts(&ssm, &stack.settings, &[spec("Good morning")])
            .await
            .unwrap()[0]
            .version,
        2
    );

    // prod -> v1: the default serves v1 though v2 is the latest.
    admin.promote("greet", 1, "prod").await.unwrap();
    let r = chat(&s, key, ask(json!({}))).await;
    assert_eq!(
        (
            r.body["prompt"]["version"].clone(),
            r.body["prompt"]["label"].clone()
        ),
        (json!(1), json!("prod"))
    );
    assert_eq!(last_prompt_text(&stack), "Hello, Ada!");

    // prod -> v2.
    assert_eq!(admin.promote("greet", 2, "prod").await.unwrap(), Some(1));
    let r = chat(&s, key, ask(json!({}))).await;
    assert_eq!(r.body["prompt"]["version"], 2);
    assert_eq!(last_prompt_text(&stack), "Good morning, Ada!");

    // Roll prod back: v1 again.
    assert_eq!(admin.rollback("greet", "prod").await.unwrap(), (2, 1));
    let r = chat(&s, key, ask(json!({}))).await;
    assert_eq!(r.body["prompt"]["version"], 1);
    assert_eq!(last_prompt_text(&stack), "Hello, Ada!");
    // Nothing earlier than v1 to roll back to.
    assert!(admin.rollback("greet", "prod").await.is_err());

    // Explicit version and label; unknown ones are 400s naming the prompt.
    assert_eq!(
        chat(&s, key, ask(json!({"version": 2}))).await.body["prompt"]["version"],
        2
    );
    let r = chat(&s, key, ask(json!({"label": "canary"}))).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no label 'canary'"),
        "{}",
        r.body
    );
    let r = chat(&s, key, ask(json!({"version": 9}))).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn missing_and_mistyped_variables_are_one_400_listing_them() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"prompt": "summarize", "variables": {"max_words": "ten", "colour": "red"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["param"], "variables");
    let m = r.body["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("missing: text")
            && m.contains("'max_words' must be integer")
            && m.contains("colour"),
        "{m}"
    );
    let r = chat(&s, stack.key("acme"), json!({"prompt": "nope"})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown prompt 'nope'")
    );
    assert_eq!(stack.model_calls(), 0);
}

#[tokio::test]
async fn ssm_down_after_warm_up_serves_last_known_good_and_a_cold_start_gets_a_503() {
    // A moto of its own: this test stops it.
    let moto = Moto::start();
    let stack = Stack::start_with(moto.url(), bedrock_emulator::EmulatorConfig::builtin()).await;
    let options = chat_handler::Options {
        config_max_age: std::time::Duration::ZERO,
        ..options()
    };
    let warm = state(&stack, options.clone());
    let body = json!({"prompt": "summarize", "variables": {"text": "Queues smooth spikes."}});
    let r = chat(&warm, stack.key("acme"), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let version = r.body["prompt"]["version"].clone();

    moto.stop();
    let r = chat(&warm, stack.key("acme"), body.clone()).await;
    assert_eq!(
        r.status, 200,
        "warm Lambda should serve the last-known-good prompt: {}",
        r.body
    );
    assert_eq!(r.body["prompt"]["version"], version);

    let cold = state(&stack, options);
    let r = chat(&cold, stack.key("acme"), body).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "configuration_unavailable");
    assert!(r.headers.contains_key("retry-after"));
}
