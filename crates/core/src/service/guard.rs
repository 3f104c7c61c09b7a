//! Guardrails around the model: the caller's text on the way in, the answer on the way out
//! (text and parsed JSON alike), and Bedrock's own guardrail, which fails closed.

use serde_json::Value;

use crate::chat::Prepared;
use crate::error::Error;
use crate::guardrails::{Findings, GuardrailConfig, Masks, PiiAction, check, check_input};
use crate::model::{
    ContentBlock, GuardrailOutcome, ModelResponse, StopReason, SystemBlock, ToolResultContent,
};
use crate::telemetry::{self, Dims};

/// Applies input guardrails to everything the caller wrote: messages of every role (a
/// caller writes the assistant turns of its history too), tool calls and results, its own
/// system text, and the template variables rendered into the prompt's system text (the
/// prompt's own text is the operator's and is not checked). Under `mask`, every value
/// becomes its placeholder in `masks`, the same one wherever it appears.
pub(crate) fn input(
    config: &GuardrailConfig,
    prepared: &mut Prepared,
    masks: &mut Masks,
) -> Result<Findings, Error> {
    let mut findings = Findings::default();
    if !config.is_active() {
        return Ok(findings);
    }
    let scan = |text: &mut String, masks: &mut Masks| {
        let (masked, f) = check_input(config, text, masks);
        *text = masked;
        f
    };
    // Variables: checked as they came; where one had PII, its masked form replaces it in
    // the prompt's rendered system text (the rendered user text is checked below).
    let skip = prepared.prompt_system_blocks;
    for variable in &prepared.variable_texts {
        let mut masked = variable.clone();
        findings.merge(scan(&mut masked, masks));
        if masked != *variable && !variable.is_empty() {
            for block in prepared.request.system.iter_mut().take(skip) {
                if let SystemBlock::Text(t) = block {
                    *t = t.replace(variable.as_str(), &masked);
                }
            }
        }
    }
    for block in prepared.request.system.iter_mut().skip(skip) {
        if let SystemBlock::Text(t) = block {
            findings.merge(scan(t, masks));
        }
    }
    for message in &mut prepared.request.messages {
        for block in &mut message.content {
            match block {
                ContentBlock::Text(t) => findings.merge(scan(t, masks)),
                ContentBlock::ToolResult { content, .. } => {
                    for part in content {
                        match part {
                            ToolResultContent::Text(t) => findings.merge(scan(t, masks)),
                            ToolResultContent::Json(v) => {
                                walk_strings(v, &mut |s| findings.merge(scan(s, masks)))
                            }
                        }
                    }
                }
                ContentBlock::ToolUse { input, .. } => {
                    walk_strings(input, &mut |s| findings.merge(scan(s, masks)));
                }
                ContentBlock::Document(doc) => match doc.text().map(str::to_owned) {
                    // Text documents are read like messages (and masked as text).
                    Some(mut text) => {
                        let before = text.clone();
                        let f = scan(&mut text, masks);
                        if text != before {
                            doc.source = crate::media::DocumentSource::Text(text);
                        }
                        findings.merge(f);
                    }
                    None => findings.unchecked.push(format!(
                        "document '{}' ({})",
                        doc.name,
                        doc.format.as_str()
                    )),
                },
                ContentBlock::Image(image) => findings
                    .unchecked
                    .push(format!("image ({})", image.format.as_str())),
                // Earlier answers: checked on their way out, and signed (masking them here
                // would break their signature).
                ContentBlock::Reasoning { .. }
                | ContentBlock::RedactedReasoning(_)
                | ContentBlock::CachePoint => {}
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
    let mut found = Findings::default();
    if response.stop_reason == StopReason::GuardrailIntervened {
        telemetry::count("GuardrailActions", 1, dims);
        // Bedrock's trace tells a mask (its anonymised text is the answer) from a block;
        // without a trace, an intervention is a block.
        if response.served.guardrail != Some(GuardrailOutcome::Masked) {
            return Err(Error::GuardrailBlocked(
                "the Bedrock guardrail intervened on this request".into(),
            ));
        }
        found
            .flagged
            .push("bedrock guardrail masked the answer".into());
    }
    if !config.is_active() {
        return Ok(found);
    }
    let redact = redacts(config);
    for block in &mut response.content {
        match block {
            ContentBlock::Text(t) => {
                let (masked, f) = check(config, t, false);
                if redact {
                    *t = masked;
                }
                found.merge(f);
            }
            // Tool-call arguments are output too.
            ContentBlock::ToolUse { input, .. } => found.merge(json_strings(config, input)),
            // Reasoning is shown to the caller: checked like the answer. Masked reasoning
            // loses its signature (it no longer matches), and is not sent back later.
            ContentBlock::Reasoning { text, signature } => {
                let (masked, f) = check(config, text, false);
                if redact && masked != *text {
                    *text = masked;
                    *signature = None;
                }
                found.merge(f);
            }
            ContentBlock::ToolResult { .. }
            | ContentBlock::CachePoint
            | ContentBlock::Image(_)
            | ContentBlock::Document(_)
            | ContentBlock::RedactedReasoning(_) => {}
        }
    }
    // Citations quote the caller's documents back: output like the rest.
    for citation in &mut response.citations {
        let (masked, f) = check(config, &citation.quote, false);
        if redact {
            citation.quote = masked;
        }
        found.merge(f);
    }
    if let Some(value) = json.as_mut() {
        // The text above may be this same JSON: its findings are counted there, once.
        json_strings(config, value);
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

/// Every string of a caller's JSON (keys included) checked as input is, with `masks`'
/// placeholders under `mask` (for a copy kept in an audit record).
pub(crate) fn input_json(config: &GuardrailConfig, value: &mut Value, masks: &mut Masks) {
    if config.is_active() {
        walk_strings(value, &mut |s| {
            *s = check_input(config, s, masks).0;
        });
    }
}

/// True when found values are replaced in an answer: `redact`, and `mask` (a value the
/// model wrote itself has no placeholder to stand for it).
fn redacts(config: &GuardrailConfig) -> bool {
    matches!(config.pii, PiiAction::Redact | PiiAction::Mask)
}

/// The answer as the client gets it under `mask`: placeholders replaced by the request's
/// values in its text, tool calls, citations and JSON. Reasoning keeps its placeholders: its
/// signature covers the text the model wrote, and a changed text would be refused when the
/// client sends it back.
pub(crate) fn restore(masks: &Masks, response: &mut ModelResponse, json: &mut Option<Value>) {
    if masks.is_empty() {
        return;
    }
    for block in &mut response.content {
        match block {
            ContentBlock::Text(t) => *t = masks.restore(t),
            ContentBlock::ToolUse { input, .. } => masks.restore_json(input),
            _ => {}
        }
    }
    for citation in &mut response.citations {
        citation.quote = masks.restore(&citation.quote);
    }
    if let Some(v) = json.as_mut() {
        masks.restore_json(v);
    }
}

/// Checks every string of a JSON value (keys included), masking PII in place under
/// `redact`.
pub(crate) fn json_strings(config: &GuardrailConfig, value: &mut Value) -> Findings {
    let mut found = Findings::default();
    let redact = redacts(config);
    let mut scan = |s: &mut String| {
        let (masked, f) = check(config, s, false);
        if redact {
            *s = masked;
        }
        found.merge(f);
    };
    walk_strings(value, &mut scan);
    found
}

fn walk_strings(value: &mut Value, scan: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(s) => scan(s),
        Value::Array(items) => items.iter_mut().for_each(|v| walk_strings(v, scan)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (mut k, mut v) in entries {
                scan(&mut k);
                walk_strings(&mut v, scan);
                map.insert(k, v);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
