//! ApplyGuardrail's contextual grounding check over the wire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

async fn emulator() -> RunningEmulator {
    let yaml = "guardrails:\n  grounded:\n    contextual_grounding: {grounding_threshold: 0.7, relevance_threshold: 0.5}\n";
    let config = EmulatorConfig::from_yaml_over_builtin(yaml).unwrap();
    bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap()
}

async fn apply(emu: &RunningEmulator, source: &str, answer: &str) -> Value {
    let body = json!({
        "source": source,
        "content": [
            {"text": {"text": "Quarry snapshots every database nightly and keeps backups for thirty days.", "qualifiers": ["grounding_source"]}},
            {"text": {"text": "How long are backups kept?", "qualifiers": ["query"]}},
            {"text": {"text": answer, "qualifiers": ["guard_content"]}}
        ]
    });
    let r = reqwest::Client::new()
        .post(format!(
            "{}/guardrail/grounded/version/DRAFT/apply",
            emu.url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn filters(body: &Value) -> Vec<Value> {
    body["assessments"][0]["contextualGroundingPolicy"]["filters"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_grounded_relevant_answer_passes_with_its_scores() {
    let emu = emulator().await;
    let body = apply(&emu, "OUTPUT", "Backups are kept for thirty days.").await;
    assert_eq!(body["action"], "NONE", "{body}");
    let f = filters(&body);
    assert_eq!(f[0]["type"], "GROUNDING");
    assert_eq!(f[0]["threshold"], 0.7);
    // backups, kept, thirty, days: the source lacks "kept".
    assert_eq!(f[0]["score"], 0.75);
    assert_eq!(f[0]["action"], "NONE");
    assert_eq!(f[1]["type"], "RELEVANCE");
    // long, backups, kept: the answer lacks "long".
    assert_eq!(f[1]["score"], 0.67);
    assert_eq!(f[1]["action"], "NONE");
    assert!(
        body["usage"]["contextualGroundingPolicyUnits"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn an_ungrounded_answer_is_blocked() {
    let emu = emulator().await;
    let body = apply(
        &emu,
        "OUTPUT",
        "Backups are kept forever on tape in Zurich.",
    )
    .await;
    assert_eq!(body["action"], "GUARDRAIL_INTERVENED", "{body}");
    assert_eq!(
        body["outputs"][0]["text"],
        "Sorry, the model cannot answer this question."
    );
    let f = filters(&body);
    let grounding = f.iter().find(|x| x["type"] == "GROUNDING").unwrap();
    assert_eq!(grounding["action"], "BLOCKED");
    assert_eq!(grounding["detected"], true);
    assert!(grounding["score"].as_f64().unwrap() < 0.7);
}

#[tokio::test]
async fn an_irrelevant_answer_is_blocked() {
    let emu = emulator().await;
    let body = apply(&emu, "OUTPUT", "Quarry snapshots every database nightly.").await;
    assert_eq!(body["action"], "GUARDRAIL_INTERVENED", "{body}");
    let f = filters(&body);
    assert_eq!(f[0]["action"], "NONE");
    assert_eq!(f[1]["type"], "RELEVANCE");
    assert_eq!(f[1]["score"], 0.0);
    assert_eq!(f[1]["action"], "BLOCKED");
}

#[tokio::test]
async fn input_is_not_checked_for_grounding() {
    let emu = emulator().await;
    let body = apply(&emu, "INPUT", "Bananas").await;
    assert_eq!(body["action"], "NONE");
    assert!(
        body["assessments"][0]
            .get("contextualGroundingPolicy")
            .is_none()
    );
}

#[tokio::test]
async fn an_unknown_qualifier_is_refused() {
    let emu = emulator().await;
    let r = reqwest::Client::new()
        .post(format!("{}/guardrail/grounded/version/DRAFT/apply", emu.url()))
        .json(&json!({"source": "OUTPUT", "content": [{"text": {"text": "x", "qualifiers": ["context"]}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["x-amzn-errortype"], "ValidationException");
}
