//! Guardrails around the model: the caller's text on the way in, the answer on the way out
//! (text and parsed JSON alike), and Bedrock's own guardrail, which fails closed.

use serde_json::Value;

use crate::chat::Prepared;
use crate::error::Error;
use crate::guardrails::{BedrockGuardrail, Findings, GuardrailConfig, PiiAction, check};
use crate::model::{ContentBlock, ModelResponse, Role, StopReason, SystemBlock, ToolResultContent};
use crate::ports::GuardrailApplier;
use crate::telemetry::{self, Dims};

/// Applies input guardrails to the caller's text (not the prompt's own system text).
pub(crate) fn input(config: &GuardrailConfig, prepared: &mut Prepared) -> Result<Findings, Error> {
    let mut findings = Findings::default();
    if !config.is_active() {
        return Ok(findings);
    }
    let mut scan = |text: &mut String, input: bool| {
        let (masked, f) = check(config, text, input);
        *text = masked;
        findings.merge(f);
    };
    let skip = prepared.prompt_system_blocks;
    for block in prepared.request.system.iter_mut().skip(skip) {
        if let SystemBlock::Text(t) = block {
            scan(t, true);
        }
    }
    for message in &mut prepared.request.messages {
        let from_user = message.role == Role::User;
        for block in &mut message.content {
            match block {
                ContentBlock::Text(t) => scan(t, from_user),
                ContentBlock::ToolResult { content, .. } => {
                    for part in content {
                        if let ToolResultContent::Text(t) = part {
                            scan(t, true);
                        }
                    }
                }
                ContentBlock::ToolUse { .. } | ContentBlock::CachePoint => {}
            }
        }
    }
    if !findings.blocked.is_empty() {
        return Err(Error::GuardrailBlocked(format!(
            "the request was blocked by a guardrail: {}",
            findings.blocked.join(", ")
        )));
    }
    Ok(findings)
}

/// Output guardrails on a finished answer, whole or streamed: a Bedrock intervention is a
/// block; PII is masked (`redact`) in the text and in the parsed JSON alike, or refused
/// (`block`); denied words are refused.
pub(crate) fn output(
    config: &GuardrailConfig,
    response: &mut ModelResponse,
    json: &mut Option<Value>,
    dims: Dims<'_>,
) -> Result<Findings, Error> {
    if response.stop_reason == StopReason::GuardrailIntervened {
        telemetry::count("GuardrailActions", 1, dims);
        return Err(Error::GuardrailBlocked(
            "the Bedrock guardrail intervened on this request".into(),
        ));
    }
    let mut found = Findings::default();
    if !config.is_active() {
        return Ok(found);
    }
    let redact = config.pii == PiiAction::Redact;
    for block in &mut response.content {
        if let ContentBlock::Text(t) = block {
            let (masked, f) = check(config, t, false);
            if redact {
                *t = masked;
            }
            found.merge(f);
        }
    }
    if redact && let Some(value) = json.as_mut() {
        // The text above may be this same JSON: count its findings once.
        redact_strings(config, value);
    }
    telemetry::count("GuardrailActions", u64::from(found.actions()), dims);
    if !found.blocked.is_empty() {
        return Err(Error::GuardrailBlocked(format!(
            "the answer was blocked by a guardrail: {}",
            found.blocked.join(", ")
        )));
    }
    Ok(found)
}

fn redact_strings(config: &GuardrailConfig, value: &mut Value) {
    match value {
        Value::String(s) => *s = check(config, s, false).0,
        Value::Array(items) => items.iter_mut().for_each(|v| redact_strings(config, v)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_strings(config, v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Asks Bedrock's guardrail about output text. A failed check is an error, never a pass:
/// it is logged, counted (`GuardrailCheckErrors`) and withholds the answer.
pub(crate) async fn bedrock_allows(
    applier: &dyn GuardrailApplier,
    guardrail: &BedrockGuardrail,
    text: &str,
    dims: Dims<'_>,
) -> Result<(), Error> {
    match applier.intervenes(guardrail, text).await {
        Ok(false) => Ok(()),
        Ok(true) => {
            telemetry::count("GuardrailActions", 1, dims);
            Err(Error::GuardrailBlocked(
                "the Bedrock guardrail intervened on the answer".into(),
            ))
        }
        Err(e) => {
            telemetry::count("GuardrailCheckErrors", 1, dims);
            tracing::error!(error = %e, guardrail = %guardrail.id, "Bedrock guardrail check failed; the answer is withheld");
            Err(Error::Dependency(e))
        }
    }
}
