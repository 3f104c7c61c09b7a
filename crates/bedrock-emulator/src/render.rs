//! Output rendered in each API's wire format: Converse JSON, ConverseStream events, and the
//! InvokeModel bodies (Anthropic Messages, or the generic body) with their stream chunks.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::error::ErrorKind;
use crate::eventstream::{Step, event, exception};
use crate::output::{OutBlock, Output, StopReason};

/// Token usage of one call, as Bedrock reports it: `input` excludes cached-prefix tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u32,
    pub output: u32,
    pub cache_read: u32,
    pub cache_write: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.input + self.output + self.cache_read + self.cache_write
    }

    pub fn converse_json(&self) -> Value {
        let mut usage = json!({
            "inputTokens": self.input,
            "outputTokens": self.output,
            "totalTokens": self.total(),
        });
        if self.cache_read > 0 || self.cache_write > 0 {
            usage["cacheReadInputTokens"] = json!(self.cache_read);
            usage["cacheWriteInputTokens"] = json!(self.cache_write);
        }
        usage
    }
}

/// When tokens leave: the first after `ttft`, each next one `per_token` later.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub ttft: Duration,
    pub per_token: Duration,
}

impl Timing {
    /// Latency of a whole (non-streamed) answer of `tokens` tokens.
    pub fn total(&self, tokens: u32) -> Duration {
        self.ttft + self.per_token * tokens.saturating_sub(1)
    }
}

/// A fault that ends a stream: after `after` content deltas, send `kind`.
#[derive(Debug, Clone, Copy)]
pub struct MidStreamFault {
    pub after: u32,
    pub kind: ErrorKind,
}

fn converse_block(block: &OutBlock) -> Value {
    match block {
        OutBlock::Text(tokens) => json!({ "text": tokens.concat() }),
        OutBlock::ToolUse { id, name, input } => {
            json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } })
        }
    }
}

pub fn converse_response(output: &Output, usage: Usage, latency: Duration) -> Value {
    json!({
        "output": {
            "message": {
                "role": "assistant",
                "content": output.blocks.iter().map(converse_block).collect::<Vec<_>>(),
            }
        },
        "stopReason": output.stop_reason.converse(),
        "usage": usage.converse_json(),
        "metrics": { "latencyMs": latency.as_millis() as u64 },
    })
}

/// Splits a tool input's JSON into a few partial-JSON deltas, as models stream them.
fn json_chunks(input: &Value) -> Vec<String> {
    let text = input.to_string();
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Adds the steps of a stream, with the timing, and cuts it at a mid-stream fault.
struct Script {
    steps: Vec<Step>,
    timing: Timing,
    deltas: u32,
    fault: Option<MidStreamFault>,
    streaming_invoke: bool,
    failed: bool,
    /// Delay before the first delta (zero when a start event already waited).
    first_delta_delay: Duration,
}

impl Script {
    fn new(timing: Timing, fault: Option<MidStreamFault>, streaming_invoke: bool) -> Self {
        Self {
            steps: Vec::new(),
            timing,
            deltas: 0,
            fault,
            streaming_invoke,
            failed: false,
            first_delta_delay: Duration::ZERO,
        }
    }

    fn push(&mut self, frame: bytes::Bytes, delay: Duration) {
        if !self.failed {
            self.steps.push(Step {
                delay,
                frame,
                is_delta: false,
            });
        }
    }

    fn delta(&mut self, frame: bytes::Bytes) {
        if self.failed {
            return;
        }
        if let Some(fault) = self.fault
            && self.deltas >= fault.after
        {
            let member = fault.kind.stream_member(self.streaming_invoke);
            self.steps.push(Step {
                delay: Duration::ZERO,
                frame: exception(member, fault.kind.default_message()),
                is_delta: false,
            });
            self.failed = true;
            return;
        }
        let delay = if self.deltas == 0 {
            self.first_delta_delay
        } else {
            self.timing.per_token
        };
        self.deltas += 1;
        self.steps.push(Step {
            delay,
            frame,
            is_delta: true,
        });
    }

    /// A fault set to fire after more deltas than the answer has still fires, at the end
    /// of the content, so tests can rely on it.
    fn finish_content(&mut self) {
        if let Some(fault) = self.fault
            && !self.failed
            && self.deltas <= fault.after
        {
            let member = fault.kind.stream_member(self.streaming_invoke);
            self.steps.push(Step {
                delay: Duration::ZERO,
                frame: exception(member, fault.kind.default_message()),
                is_delta: false,
            });
            self.failed = true;
        }
    }
}

pub fn converse_stream_script(
    output: &Output,
    usage: Usage,
    timing: Timing,
    fault: Option<MidStreamFault>,
) -> Vec<Step> {
    let mut s = Script::new(timing, fault, false);
    s.push(
        event("messageStart", &json!({ "role": "assistant" })),
        timing.ttft,
    );
    for (index, block) in output.blocks.iter().enumerate() {
        match block {
            OutBlock::Text(tokens) => {
                for token in tokens {
                    s.delta(event(
                        "contentBlockDelta",
                        &json!({ "contentBlockIndex": index, "delta": { "text": token } }),
                    ));
                }
            }
            OutBlock::ToolUse { id, name, input } => {
                s.push(
                    event(
                        "contentBlockStart",
                        &json!({
                            "contentBlockIndex": index,
                            "start": { "toolUse": { "toolUseId": id, "name": name } }
                        }),
                    ),
                    Duration::ZERO,
                );
                for chunk in json_chunks(input) {
                    s.delta(event(
                        "contentBlockDelta",
                        &json!({ "contentBlockIndex": index, "delta": { "toolUse": { "input": chunk } } }),
                    ));
                }
            }
        }
        s.push(
            event("contentBlockStop", &json!({ "contentBlockIndex": index })),
            Duration::ZERO,
        );
    }
    s.finish_content();
    s.push(
        event(
            "messageStop",
            &json!({ "stopReason": output.stop_reason.converse() }),
        ),
        Duration::ZERO,
    );
    let latency = timing.total(output.output_tokens);
    s.push(
        event(
            "metadata",
            &json!({
                "usage": usage.converse_json(),
                "metrics": { "latencyMs": latency.as_millis() as u64 },
            }),
        ),
        Duration::ZERO,
    );
    s.steps
}

fn anthropic_stop(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn
        | StopReason::GuardrailIntervened
        | StopReason::MalformedModelOutput
        | StopReason::MalformedToolUse => "end_turn",
        StopReason::ToolUse => "tool_use",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ContentFiltered => "refusal",
        StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
    }
}

fn anthropic_block(block: &OutBlock) -> Value {
    match block {
        OutBlock::Text(tokens) => json!({ "type": "text", "text": tokens.concat() }),
        OutBlock::ToolUse { id, name, input } => {
            json!({ "type": "tool_use", "id": id, "name": name, "input": input })
        }
    }
}

fn anthropic_usage(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
    })
}

/// The Anthropic Messages response body of InvokeModel.
pub fn anthropic_response(output: &Output, usage: Usage, model: &str, request_id: &str) -> Value {
    json!({
        "id": format!("msg_bdrk_{}", request_id.replace('-', "")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": output.blocks.iter().map(anthropic_block).collect::<Vec<_>>(),
        "stop_reason": anthropic_stop(output.stop_reason),
        "stop_sequence": Value::Null,
        "usage": anthropic_usage(usage),
    })
}

fn generic_stop(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

/// The generic InvokeModel response body (for non-Anthropic models).
pub fn generic_response(output: &Output, usage: Usage) -> Value {
    json!({
        "generation": output.text(),
        "prompt_token_count": usage.input + usage.cache_read + usage.cache_write,
        "generation_token_count": usage.output,
        "stop_reason": generic_stop(output.stop_reason),
    })
}

fn chunk(payload: &Value) -> bytes::Bytes {
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    event("chunk", &json!({ "bytes": encoded }))
}

fn invocation_metrics(usage: Usage, timing: Timing, tokens: u32) -> Value {
    json!({
        "inputTokenCount": usage.input,
        "outputTokenCount": usage.output,
        "invocationLatency": timing.total(tokens).as_millis() as u64,
        "firstByteLatency": timing.ttft.as_millis() as u64,
    })
}

pub fn anthropic_stream_script(
    output: &Output,
    usage: Usage,
    model: &str,
    request_id: &str,
    timing: Timing,
    fault: Option<MidStreamFault>,
) -> Vec<Step> {
    let mut s = Script::new(timing, fault, true);
    let mut start_usage = anthropic_usage(usage);
    start_usage["output_tokens"] = json!(1);
    s.push(
        chunk(&json!({
            "type": "message_start",
            "message": {
                "id": format!("msg_bdrk_{}", request_id.replace('-', "")),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": Value::Null,
                "stop_sequence": Value::Null,
                "usage": start_usage,
            }
        })),
        timing.ttft,
    );
    for (index, block) in output.blocks.iter().enumerate() {
        match block {
            OutBlock::Text(tokens) => {
                s.push(
                    chunk(&json!({ "type": "content_block_start", "index": index, "content_block": { "type": "text", "text": "" } })),
                    Duration::ZERO,
                );
                for token in tokens {
                    s.delta(chunk(&json!({
                        "type": "content_block_delta", "index": index,
                        "delta": { "type": "text_delta", "text": token }
                    })));
                }
            }
            OutBlock::ToolUse { id, name, input } => {
                s.push(
                    chunk(&json!({
                        "type": "content_block_start", "index": index,
                        "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} }
                    })),
                    Duration::ZERO,
                );
                for part in json_chunks(input) {
                    s.delta(chunk(&json!({
                        "type": "content_block_delta", "index": index,
                        "delta": { "type": "input_json_delta", "partial_json": part }
                    })));
                }
            }
        }
        s.push(
            chunk(&json!({ "type": "content_block_stop", "index": index })),
            Duration::ZERO,
        );
    }
    s.finish_content();
    s.push(
        chunk(&json!({
            "type": "message_delta",
            "delta": { "stop_reason": anthropic_stop(output.stop_reason), "stop_sequence": Value::Null },
            "usage": { "output_tokens": usage.output },
        })),
        Duration::ZERO,
    );
    s.push(
        chunk(&json!({
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": invocation_metrics(usage, timing, output.output_tokens),
        })),
        Duration::ZERO,
    );
    s.steps
}

pub fn generic_stream_script(
    output: &Output,
    usage: Usage,
    timing: Timing,
    fault: Option<MidStreamFault>,
) -> Vec<Step> {
    let mut s = Script::new(timing, fault, true);
    let tokens: Vec<String> = output
        .blocks
        .iter()
        .flat_map(|b| match b {
            OutBlock::Text(tokens) => tokens.clone(),
            OutBlock::ToolUse { input, .. } => vec![input.to_string()],
        })
        .collect();
    let prompt_tokens = usage.input + usage.cache_read + usage.cache_write;
    // No start event in this format: the first token itself waits for the first-token delay.
    s.first_delta_delay = timing.ttft;
    for (i, token) in tokens.iter().enumerate() {
        s.delta(chunk(&json!({
            "generation": token,
            "prompt_token_count": if i == 0 { json!(prompt_tokens) } else { Value::Null },
            "generation_token_count": i + 1,
            "stop_reason": Value::Null,
        })));
    }
    s.finish_content();
    s.push(
        chunk(&json!({
            "generation": "",
            "prompt_token_count": Value::Null,
            "generation_token_count": usage.output,
            "stop_reason": generic_stop(output.stop_reason),
            "amazon-bedrock-invocationMetrics": invocation_metrics(usage, timing, output.output_tokens),
        })),
        Duration::ZERO,
    );
    s.steps
}
