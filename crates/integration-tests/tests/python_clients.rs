//! Unmodified Python clients against Quarry's parts: boto3 against the Bedrock emulator,
//! the official openai client against the chat API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bedrock_emulator::EmulatorConfig;
use quarry_testkit::{python, workspace_root};

/// Runs a script of `python/` with the given environment; asserts it printed `expect`.
async fn run_script(name: &str, env: &[(&str, &str)], expect: &str) {
    let script = workspace_root()
        .join("crates/integration-tests/python")
        .join(name);
    let mut command = tokio::process::Command::new(python());
    command.arg(&script).env_remove("AWS_PROFILE");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(expect), "{stdout}");
}

#[tokio::test]
async fn boto3_speaks_to_the_emulator_unmodified() {
    let emulator = bedrock_emulator::start(EmulatorConfig::builtin(), "127.0.0.1:0")
        .await
        .unwrap();
    let url = emulator.url();
    let env = [
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url.as_str()),
        ("EMULATOR_URL", url.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_MAX_ATTEMPTS", "1"),
        ("AWS_RETRY_MODE", "standard"),
    ];
    run_script("boto3_emulator.py", &env, "boto3 OK").await;
}

#[tokio::test]
async fn the_official_openai_client_works_unmodified() {
    let stack = quarry_testkit::Stack::start().await;
    let url = common::serve(common::state(&stack, common::options())).await;
    run_script(
        "openai_client.py",
        &[("QUARRY_URL", &url), ("QUARRY_KEY", stack.key("acme"))],
        "openai OK",
    )
    .await;
}

#[tokio::test]
async fn the_openai_client_sends_images_documents_reasoning_and_tiers() {
    let stack = quarry_testkit::Stack::start().await;
    let url = common::serve(common::state(&stack, common::options())).await;
    run_script(
        "openai_fidelity.py",
        &[("QUARRY_URL", &url), ("QUARRY_KEY", stack.key("acme"))],
        "openai fidelity OK",
    )
    .await;
}

#[tokio::test]
async fn the_official_anthropic_client_works_unmodified() {
    let stack = quarry_testkit::Stack::start().await;
    let url = common::serve(common::state(&stack, common::options())).await;
    run_script(
        "anthropic_client.py",
        &[("QUARRY_URL", &url), ("QUARRY_KEY", stack.key("acme"))],
        "anthropic OK",
    )
    .await;
}

#[tokio::test]
async fn the_openai_client_embeds_unmodified() {
    let stack = quarry_testkit::Stack::start().await;
    let url = common::serve(common::state(&stack, common::options())).await;
    let emulator = stack.emulator.url();
    run_script(
        "openai_embeddings.py",
        &[
            ("QUARRY_URL", &url),
            ("QUARRY_KEY", stack.key("acme")),
            ("EMULATOR_URL", emulator.as_str()),
        ],
        "embeddings OK",
    )
    .await;
}
