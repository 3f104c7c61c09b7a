//! A model call under the request's `guardrailConfig`: the input is checked before the model
//! runs and the output after it, whole for Converse and chunk by chunk for ConverseStream
//! (`sync`: text is held until its chunk is checked, and masked; `async`: text leaves at
//! once and only what follows a violation is stopped; Bedrock cannot mask in async mode).
//! With `trace: enabled` the response reports every assessment in `trace.guardrail`.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Map, Value, json};

use crate::config::GuardrailSpec;
use crate::converse::{GuardrailConfig, Prompt};
use crate::error::BedrockError;
use crate::guardrail::{self, Assessment, assess, check_guardrail_ref};
use crate::output::{OutBlock, Output, StopReason, generate, split_tokens};

/// A sync-mode guardrail checks streamed text in chunks of about this many characters.
pub const STREAM_CHUNK_CHARS: usize = 200;

/// How a guardrail treats a stream's output: `sync` holds text until it is checked,
/// `async` sends it at once and checks behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamMode {
    #[default]
    Sync,
    Async,
}

/// The request's `guardrailConfig`.
#[derive(Debug, Clone)]
pub struct GuardrailRequest {
    pub id: String,
    pub version: String,
    /// `trace: enabled` or `enabled_full`: the response reports the guardrail's assessments.
    pub trace: bool,
    pub stream_mode: StreamMode,
}

impl GuardrailConfig {
    /// The configuration with its enums checked.
    pub fn checked(self) -> Result<GuardrailRequest, BedrockError> {
        let trace = match self.trace.as_deref() {
            None | Some("disabled") => false,
            Some("enabled" | "enabled_full") => true,
            Some(other) => {
                return Err(BedrockError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'guardrailConfig.trace' failed to satisfy constraint: Member must satisfy enum value set: [enabled, disabled, enabled_full]"
                )));
            }
        };
        let stream_mode = match self.stream_processing_mode.as_deref() {
            None | Some("sync") => StreamMode::Sync,
            Some("async") => StreamMode::Async,
            Some(other) => {
                return Err(BedrockError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'guardrailConfig.streamProcessingMode' failed to satisfy constraint: Member must satisfy enum value set: [sync, async]"
                )));
            }
        };
        Ok(GuardrailRequest {
            id: self.guardrail_identifier,
            version: self.guardrail_version,
            trace,
            stream_mode,
        })
    }
}

/// The answer and what the guardrail reports about it.
#[derive(Debug, Clone)]
pub struct Guarded {
    pub output: Output,
    /// `trace.guardrail`, when the request asked for a trace.
    pub trace: Option<Value>,
    /// Set for a stream a sync-mode guardrail holds back: the size of its chunks.
    pub held_chunk_chars: Option<usize>,
}

/// Collects the assessments of one call into Bedrock's `GuardrailTraceAssessment`.
struct Trace<'a> {
    spec: &'a GuardrailSpec,
    input: Option<Value>,
    outputs: Vec<Value>,
    model_output: Vec<String>,
    reason: Option<&'static str>,
}

impl<'a> Trace<'a> {
    fn new(spec: &'a GuardrailSpec) -> Self {
        Self {
            spec,
            input: None,
            outputs: Vec::new(),
            model_output: Vec::new(),
            reason: None,
        }
    }

    /// An assessment with its invocation metrics.
    fn entry(&self, assessment: &Assessment, masks: bool) -> Value {
        let mut entry = guardrail::assessment_json(assessment, masks);
        entry["invocationMetrics"] = json!({
            "usage": guardrail::usage_json(self.spec, assessment),
            "guardrailCoverage": {
                "textCharacters": { "guarded": assessment.chars, "total": assessment.chars }
            },
        });
        entry
    }

    fn finish(self, request: &GuardrailRequest) -> Option<Value> {
        if !request.trace {
            return None;
        }
        let mut trace = Map::new();
        if let Some(input) = self.input {
            trace.insert(
                "inputAssessment".into(),
                json!({ request.id.clone(): input }),
            );
        }
        if !self.outputs.is_empty() {
            trace.insert(
                "outputAssessments".into(),
                json!({ request.id.clone(): self.outputs }),
            );
        }
        if !self.model_output.is_empty() {
            trace.insert("modelOutput".into(), json!(self.model_output));
        }
        if let Some(reason) = self.reason {
            trace.insert("actionReason".into(), json!(reason));
        }
        Some(Value::Object(trace))
    }
}

/// Generates the answer to `prompt`, under its guardrail if it has one.
pub fn answer(
    guardrails: &BTreeMap<String, GuardrailSpec>,
    prompt: &Prompt,
    model_id: &str,
    malformed: bool,
    streaming: bool,
) -> Result<Guarded, BedrockError> {
    let Some(request) = &prompt.guardrail else {
        return Ok(Guarded {
            output: generate(prompt, model_id, malformed),
            trace: None,
            held_chunk_chars: None,
        });
    };
    check_guardrail_ref(&request.id, &request.version, "guardrailConfig.")?;
    let spec = guardrails.get(&request.id).ok_or_else(|| {
        BedrockError::validation(format!(
            "The guardrail identifier or version provided in the request does not exist: {}",
            request.id
        ))
    })?;
    let mut trace = Trace::new(spec);
    let input = assess(spec, &prompt.input_texts)?;
    trace.input = Some(trace.entry(&input, true));
    if input.blocked() {
        trace.reason = guardrail::action_reason(&input);
        return Ok(Guarded {
            output: Output::from_text(
                &spec.blocked_input_messaging,
                StopReason::GuardrailIntervened,
            ),
            trace: trace.finish(request),
            held_chunk_chars: None,
        });
    }
    let generated = generate(prompt, model_id, malformed);
    let texts: Vec<String> = generated.blocks.iter().filter_map(OutBlock::text).collect();
    let held = streaming && request.stream_mode == StreamMode::Sync;
    let output = if texts.iter().all(String::is_empty) {
        generated
    } else if streaming {
        streamed(
            spec,
            generated,
            &texts,
            request.stream_mode == StreamMode::Sync,
            &mut trace,
        )?
    } else {
        whole(spec, generated, &texts, &mut trace)?
    };
    Ok(Guarded {
        output,
        trace: trace.finish(request),
        held_chunk_chars: held.then_some(STREAM_CHUNK_CHARS),
    })
}

/// Masks each text block with its masked text.
fn masked(mut output: Output, masked_texts: &[String]) -> Output {
    let mut texts = masked_texts.iter();
    for block in &mut output.blocks {
        if block.tokens().is_some()
            && let Some(text) = texts.next()
        {
            block.set_tokens(split_tokens(text));
        }
    }
    output.stop_reason = StopReason::GuardrailIntervened;
    output
}

fn blocked_with(sent: &str, spec: &GuardrailSpec) -> Output {
    Output::from_text(
        &format!("{sent}{}", spec.blocked_outputs_messaging),
        StopReason::GuardrailIntervened,
    )
}

/// Converse: the whole answer is checked before anything is returned.
fn whole(
    spec: &GuardrailSpec,
    generated: Output,
    texts: &[String],
    trace: &mut Trace<'_>,
) -> Result<Output, BedrockError> {
    let assessment = assess(spec, texts)?;
    trace.outputs.push(trace.entry(&assessment, true));
    if !assessment.intervened() {
        return Ok(generated);
    }
    trace.model_output = texts.to_vec();
    trace.reason = guardrail::action_reason(&assessment);
    Ok(if assessment.blocked() {
        blocked_with("", spec)
    } else {
        masked(generated, &assessment.outputs)
    })
}

/// Consecutive token ranges of at least [`STREAM_CHUNK_CHARS`] characters (the last may be
/// shorter).
fn chunks(tokens: &[String]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut chars = 0;
    for (i, token) in tokens.iter().enumerate() {
        chars += token.chars().count();
        if chars >= STREAM_CHUNK_CHARS {
            ranges.push(start..i + 1);
            start = i + 1;
            chars = 0;
        }
    }
    if start < tokens.len() {
        ranges.push(start..tokens.len());
    }
    ranges
}

/// ConverseStream: the answer's text is checked chunk by chunk as it would leave. `sync`
/// withholds the chunk that breaks a rule and masks; `async` has already sent that chunk
/// when its check ends, and cannot mask.
fn streamed(
    spec: &GuardrailSpec,
    generated: Output,
    texts: &[String],
    sync: bool,
    trace: &mut Trace<'_>,
) -> Result<Output, BedrockError> {
    let tokens: Vec<String> = generated
        .blocks
        .iter()
        .filter_map(OutBlock::tokens)
        .flatten()
        .cloned()
        .collect();
    for range in chunks(&tokens) {
        let chunk = tokens.get(range.clone()).unwrap_or_default().concat();
        let so_far = tokens.get(..range.end).unwrap_or_default().concat();
        let own = assess(spec, &[chunk])?;
        // A denied phrase can straddle two chunks: the check covers all text so far.
        let cumulative = assess(spec, std::slice::from_ref(&so_far))?;
        if !cumulative.blocked() {
            trace.outputs.push(trace.entry(&own, sync));
            continue;
        }
        let shown = if own.blocked() { &own } else { &cumulative };
        trace.outputs.push(trace.entry(shown, sync));
        trace.model_output = vec![so_far.clone()];
        trace.reason = guardrail::action_reason(&cumulative);
        let sent = if sync {
            let clean = tokens.get(..range.start).unwrap_or_default().concat();
            assess(spec, &[clean])?.outputs.concat()
        } else {
            so_far
        };
        return Ok(blocked_with(&sent, spec));
    }
    if !sync {
        return Ok(generated);
    }
    let assessment = assess(spec, texts)?;
    if !assessment.intervened() {
        return Ok(generated);
    }
    trace.model_output = texts.to_vec();
    trace.reason = guardrail::action_reason(&assessment);
    Ok(masked(generated, &assessment.outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_token_once() {
        let tokens: Vec<String> = (0..100).map(|i| format!("word{i} ")).collect();
        let ranges = chunks(&tokens);
        assert!(ranges.len() > 1);
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, 100);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
    }
}
