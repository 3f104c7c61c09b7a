//! A request's guardrail through the SDK: ConverseStream output guarded chunk by chunk in
//! sync and async mode, and the trace that tells a block from a mask, in ConverseStream and
//! Converse alike. The emulator model says what a `Repeat:` line asks, so the output can
//! carry PII.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConverseStreamOutput as Event, GuardrailAssessment, GuardrailConfiguration,
    GuardrailConverseContentBlock, GuardrailConverseTextBlock, GuardrailStreamConfiguration,
    GuardrailStreamProcessingMode, GuardrailTrace, GuardrailTraceAssessment, Message,
};
use common::*;
use serde_json::json;

const GUARD: &str = "quarrydefault";
const BLOCKED: &str = "Sorry, the model cannot answer this question.";

fn stream_guard(mode: GuardrailStreamProcessingMode) -> GuardrailStreamConfiguration {
    GuardrailStreamConfiguration::builder()
        .guardrail_identifier(GUARD)
        .guardrail_version("DRAFT")
        .trace(GuardrailTrace::Enabled)
        .stream_processing_mode(mode)
        .build()
}

/// A user message asking the model to repeat `said`; the guardrail evaluates only the
/// guardContent block, so the input passes and the output is what gets checked.
fn repeat(said: &str) -> Message {
    user_blocks(vec![
        ContentBlock::GuardContent(GuardrailConverseContentBlock::Text(
            GuardrailConverseTextBlock::builder()
                .text("Please repeat what follows.")
                .build()
                .unwrap(),
        )),
        ContentBlock::Text(format!("Repeat: {said}")),
    ])
}

struct Streamed {
    text: String,
    stop: String,
    trace: Option<GuardrailTraceAssessment>,
}

async fn stream(
    c: &aws_sdk_bedrockruntime::Client,
    mode: GuardrailStreamProcessingMode,
    said: &str,
) -> Streamed {
    let all = events(
        c.converse_stream()
            .model_id(NOVA)
            .messages(repeat(said))
            .guardrail_config(stream_guard(mode))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let stop = all
        .iter()
        .find_map(|e| match e {
            Event::MessageStop(s) => Some(s.stop_reason().as_str().to_owned()),
            _ => None,
        })
        .unwrap();
    let Some(Event::Metadata(metadata)) = all.last() else {
        panic!("no metadata event")
    };
    Streamed {
        text: streamed_text(&all),
        stop,
        trace: metadata.trace().and_then(|t| t.guardrail()).cloned(),
    }
}

/// The PII actions of a list of assessments, in order.
fn pii_actions(assessments: &[GuardrailAssessment]) -> Vec<String> {
    assessments
        .iter()
        .filter_map(|a| a.sensitive_information_policy())
        .flat_map(|p| p.pii_entities())
        .map(|e| e.action().as_str().to_owned())
        .collect()
}

fn output_actions(trace: &GuardrailTraceAssessment) -> Vec<String> {
    pii_actions(&trace.output_assessments().unwrap()[GUARD])
}

const LEAD: &str = "lorem lorem lorem lorem lorem lorem lorem lorem lorem lorem ";

fn long_with(tail: &str) -> String {
    format!("{}{tail}", LEAD.repeat(5))
}

#[tokio::test]
async fn stream_guardrail_sync_masks_and_blocks() {
    let emu = emulator().await;
    let c = client(&emu);
    let sync = GuardrailStreamProcessingMode::Sync;

    let masked = stream(&c, sync.clone(), "Write to jane@example.com for details.").await;
    assert_eq!(masked.text, "Write to {EMAIL} for details.");
    assert_eq!(masked.stop, "guardrail_intervened");
    let trace = masked.trace.unwrap();
    assert_eq!(output_actions(&trace), ["ANONYMIZED"]);
    assert_eq!(
        trace.model_output(),
        ["Write to jane@example.com for details."]
    );
    assert_eq!(trace.action_reason(), Some("Guardrail masked."));
    // The input assessment covered the guardContent only.
    assert!(
        trace.input_assessment().unwrap()[GUARD]
            .sensitive_information_policy()
            .is_none()
    );

    let blocked = stream(&c, sync.clone(), "Your SSN is 123-45-6789.").await;
    assert_eq!(blocked.text, BLOCKED);
    assert_eq!(blocked.stop, "guardrail_intervened");
    let trace = blocked.trace.unwrap();
    assert!(output_actions(&trace).contains(&"BLOCKED".to_owned()));
    assert_eq!(trace.action_reason(), Some("Guardrail blocked."));

    // A violation in a later chunk: the clean chunk before it has left, the rest has not.
    let late = stream(
        &c,
        sync.clone(),
        &long_with("Your SSN is 123-45-6789 today."),
    )
    .await;
    assert!(!late.text.contains("123-45-6789"), "{}", late.text);
    assert!(late.text.starts_with(&LEAD.repeat(3)), "{}", late.text);
    assert!(late.text.ends_with(BLOCKED));
    assert_eq!(late.stop, "guardrail_intervened");
    let late_trace = late.trace.unwrap();
    let chunks = &late_trace.output_assessments().unwrap()[GUARD];
    assert_eq!(chunks.len(), 2);
    assert!(chunks[0].sensitive_information_policy().is_none());
    assert_eq!(pii_actions(&chunks[1..]), ["BLOCKED"]);

    let clean = stream(&c, sync, "Nothing to see here.").await;
    assert_eq!(clean.text, "Nothing to see here.");
    assert_eq!(clean.stop, "end_turn");
    assert!(output_actions(&clean.trace.unwrap()).is_empty());
}

#[tokio::test]
async fn stream_guardrail_async_sends_then_stops() {
    let emu = emulator().await;
    let c = client(&emu);
    let mode = GuardrailStreamProcessingMode::Async;

    // Bedrock cannot mask in async mode: the text leaves as it is, reported but not masked.
    let unmasked = stream(&c, mode.clone(), "Write to jane@example.com for details.").await;
    assert_eq!(unmasked.text, "Write to jane@example.com for details.");
    assert_eq!(unmasked.stop, "end_turn");
    assert_eq!(output_actions(&unmasked.trace.unwrap()), ["NONE"]);

    // The chunk with the violation has left before its check ends; what follows is stopped.
    let said = long_with("Your SSN is 123-45-6789 today.");
    let late = stream(&c, mode, &said).await;
    assert!(late.text.starts_with(&said), "{}", late.text);
    assert!(late.text.ends_with(BLOCKED));
    assert_eq!(late.stop, "guardrail_intervened");
    assert!(output_actions(&late.trace.unwrap()).contains(&"BLOCKED".to_owned()));
}

#[tokio::test]
async fn converse_guardrail_trace_tells_block_from_mask() {
    let emu = emulator().await;
    let c = client(&emu);
    let ask = |said: &str, trace: GuardrailTrace| {
        c.converse()
            .model_id(NOVA)
            .messages(repeat(said))
            .guardrail_config(
                GuardrailConfiguration::builder()
                    .guardrail_identifier(GUARD)
                    .guardrail_version("DRAFT")
                    .trace(trace)
                    .build(),
            )
            .send()
    };
    let masked = ask("Call 555-123-4567 now.", GuardrailTrace::Enabled)
        .await
        .unwrap();
    assert_eq!(content(&masked)[0].as_text().unwrap(), "Call {PHONE} now.");
    assert_eq!(masked.stop_reason().as_str(), "guardrail_intervened");
    let trace = masked.trace().unwrap().guardrail().unwrap();
    assert_eq!(output_actions(trace), ["ANONYMIZED"]);
    assert!(
        trace.output_assessments().unwrap()[GUARD][0]
            .invocation_metrics()
            .unwrap()
            .usage()
            .unwrap()
            .sensitive_information_policy_units()
            > 0
    );

    let blocked = ask("Key AKIAABCDEFGHIJKLMNOP here.", GuardrailTrace::Enabled)
        .await
        .unwrap();
    assert_eq!(content(&blocked)[0].as_text().unwrap(), BLOCKED);
    let trace = blocked.trace().unwrap().guardrail().unwrap();
    assert_eq!(output_actions(trace), ["BLOCKED"]);
    assert_eq!(trace.model_output(), ["Key AKIAABCDEFGHIJKLMNOP here."]);

    // Without guardContent the whole input is evaluated: PII that anonymizes is reported,
    // and a denied phrase blocks before the model runs.
    let input_masked = c
        .converse()
        .model_id(NOVA)
        .messages(user("Repeat: mail jane@example.com"))
        .guardrail_config(
            GuardrailConfiguration::builder()
                .guardrail_identifier(GUARD)
                .guardrail_version("DRAFT")
                .trace(GuardrailTrace::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let trace = input_masked.trace().unwrap().guardrail().unwrap();
    assert_eq!(
        pii_actions(std::slice::from_ref(
            &trace.input_assessment().unwrap()[GUARD]
        )),
        ["ANONYMIZED"]
    );
    let input_blocked = c
        .converse()
        .model_id(NOVA)
        .messages(user("What is confidential project x?"))
        .guardrail_config(
            GuardrailConfiguration::builder()
                .guardrail_identifier(GUARD)
                .guardrail_version("DRAFT")
                .trace(GuardrailTrace::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let trace = input_blocked.trace().unwrap().guardrail().unwrap();
    let words = trace.input_assessment().unwrap()[GUARD]
        .word_policy()
        .unwrap()
        .custom_words();
    assert_eq!(words[0].action().as_str(), "BLOCKED");
    assert!(trace.output_assessments().is_none());

    // No trace unless asked for.
    let quiet = ask("Call 555-123-4567 now.", GuardrailTrace::Disabled)
        .await
        .unwrap();
    assert!(quiet.trace().is_none());
    assert_eq!(quiet.stop_reason().as_str(), "guardrail_intervened");
}

/// Gaps of more than `at_least` between consecutive text deltas.
async fn long_gaps(
    c: &aws_sdk_bedrockruntime::Client,
    mode: GuardrailStreamProcessingMode,
    at_least: Duration,
) -> (usize, usize) {
    let mut out = c
        .converse_stream()
        .model_id(NOVA)
        .messages(user(&format!("Repeat: {}", LEAD.repeat(6))))
        .guardrail_config(stream_guard(mode))
        .send()
        .await
        .unwrap()
        .stream;
    let mut arrivals = Vec::new();
    while let Some(event) = out.recv().await.unwrap() {
        if let Event::ContentBlockDelta(_) = event {
            arrivals.push(Instant::now());
        }
    }
    let gaps = arrivals
        .windows(2)
        .filter(|w| w[1] - w[0] >= at_least)
        .count();
    (gaps, arrivals.len())
}

#[tokio::test]
async fn sync_mode_holds_text_until_its_chunk_is_checked() {
    let emu = emulator().await;
    let c = client(&emu);
    let r = reqwest::Client::new()
        .post(format!("{}/_emulator/latency", emu.url()))
        .json(&json!({"ttft_ms": 0, "per_token_ms": 30}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let gap = Duration::from_millis(20);
    let (sync_gaps, deltas) = long_gaps(&c, GuardrailStreamProcessingMode::Sync, gap).await;
    let (async_gaps, _) = long_gaps(&c, GuardrailStreamProcessingMode::Async, gap).await;
    assert_eq!(deltas, 60);
    // Async: one gap per token. Sync: one per chunk of about 200 characters (2 here).
    assert!(async_gaps >= deltas - 2, "async {async_gaps} of {deltas}");
    assert!(sync_gaps <= 6, "sync {sync_gaps} of {deltas}");
}
