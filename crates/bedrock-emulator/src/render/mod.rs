//! Output rendered in each API's wire format: Converse JSON and ConverseStream events
//! ([`converse`]), and InvokeModel's native answers with their stream chunks: Anthropic
//! Messages ([`anthropic`]), Amazon Nova ([`nova`]) and Meta Llama ([`llama`], which the
//! emulator's stand-in body for other providers is answered in too).

pub mod anthropic;
pub mod converse;
pub mod llama;
pub mod nova;

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::error::ErrorKind;
use crate::eventstream::{Step, event, exception};
use crate::serving::Serving;
use crate::tally::CacheTtl;

pub use anthropic::{anthropic_response, anthropic_stream_script};
pub use converse::{converse_response, converse_stream_script};
pub use llama::{llama_response, llama_stream_script};
pub use nova::{nova_response, nova_stream_script};

/// Token usage of one call, as Bedrock reports it: `input` excludes cached-prefix tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u32,
    pub output: u32,
    pub cache_read: u32,
    pub cache_write: u32,
    /// The TTL of the checkpoint a cache write was made for.
    pub cache_write_ttl: CacheTtl,
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
        if self.cache_write > 0 {
            usage["cacheDetails"] = json!([{
                "ttl": self.cache_write_ttl.as_str(),
                "inputTokens": self.cache_write,
            }]);
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

/// What a Converse response says besides the answer.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Echoed as `serviceTier` and `performanceConfig`.
    pub serving: Serving,
    /// The `trace` member (guardrail assessments, prompt router), when there is one.
    pub trace: Option<Value>,
    /// A sync-mode guardrail holds streamed text back in chunks of about this many
    /// characters until it has checked them.
    pub held_chunk_chars: Option<usize>,
}

impl Extras {
    /// Adds `serviceTier`, `performanceConfig` and `trace` to a response or metadata event.
    fn annotate(&self, body: &mut Value) {
        body["serviceTier"] = json!({ "type": self.serving.service_tier });
        if let Some(latency) = &self.serving.latency {
            body["performanceConfig"] = json!({ "latency": latency });
        }
        if let Some(trace) = &self.trace {
            body["trace"] = trace.clone();
        }
    }
}

/// Splits a tool input's JSON into a few partial-JSON deltas, as models stream them.
pub(crate) fn json_chunks(input: &Value) -> Vec<String> {
    let text = input.to_string();
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(4).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Adds the steps of a stream, with the timing, and cuts it at a mid-stream fault.
pub(crate) struct Script {
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
    pub(crate) fn new(
        timing: Timing,
        fault: Option<MidStreamFault>,
        streaming_invoke: bool,
    ) -> Self {
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

    pub(crate) fn push(&mut self, frame: bytes::Bytes, delay: Duration) {
        if !self.failed {
            self.steps.push(Step {
                delay,
                frame,
                is_delta: false,
            });
        }
    }

    pub(crate) fn delta(&mut self, frame: bytes::Bytes) {
        self.delta_after(frame, None);
    }

    /// A content delta; `delay` overrides the token timing (held guardrail chunks).
    pub(crate) fn delta_after(&mut self, frame: bytes::Bytes, delay: Option<Duration>) {
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
        let delay = match delay {
            Some(d) => d,
            None if self.deltas == 0 => self.first_delta_delay,
            None => self.timing.per_token,
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
    pub(crate) fn finish_content(&mut self) {
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

pub(crate) fn chunk(payload: &Value) -> bytes::Bytes {
    let encoded = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    event("chunk", &json!({ "bytes": encoded }))
}

pub(crate) fn invocation_metrics(usage: Usage, timing: Timing, tokens: u32) -> Value {
    json!({
        "inputTokenCount": usage.input,
        "outputTokenCount": usage.output,
        "invocationLatency": timing.total(tokens).as_millis() as u64,
        "firstByteLatency": timing.ttft.as_millis() as u64,
    })
}
