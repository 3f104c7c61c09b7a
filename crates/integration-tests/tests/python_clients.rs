//! Unmodified Python clients against Quarry's parts: boto3 against the Bedrock emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bedrock_emulator::EmulatorConfig;
use quarry_testkit::{python, workspace_root};

#[tokio::test]
async fn boto3_speaks_to_the_emulator_unmodified() {
    let emulator = bedrock_emulator::start(EmulatorConfig::builtin(), "127.0.0.1:0")
        .await
        .unwrap();
    let script = workspace_root().join("crates/integration-tests/python/boto3_emulator.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator.url())
        .env("EMULATOR_URL", emulator.url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_RETRY_MODE", "standard")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "boto3 script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("boto3 OK"));
}

mod common;

#[tokio::test]
async fn the_official_openai_client_works_unmodified() {
    let stack = quarry_testkit::Stack::start().await;
    let url = common::serve(common::state(&stack, common::options())).await;
    let script = workspace_root().join("crates/integration-tests/python/openai_client.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .env("QUARRY_URL", &url)
        .env("QUARRY_KEY", stack.key("acme"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openai script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("openai OK"));
}
