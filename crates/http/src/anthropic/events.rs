//! The Messages API's stream: `message_start`, `ping`, then per content block
//! `content_block_start`, its deltas (`text_delta`, `thinking_delta`, `signature_delta`,
//! `input_json_delta`) and `content_block_stop`, then `message_delta` (stop reason and usage)
//! and `message_stop`; an `error` event ends a stream that fails. Blocks are numbered in the
//! order they start, as the SDKs index them.

use quarry_core::service::StreamSummary;
use serde_json::{Value, json};

use super::response::{stop_reason, usage};

/// The block open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    Tool(u32),
}

/// Turns the service's stream items into Messages events, tracking block numbers.
#[derive(Debug, Default)]
pub struct Encoder {
    next: usize,
    open: Option<(Open, usize)>,
    /// Block number of each tool call (by its ordinal), for arguments that arrive late.
    tools: Vec<(u32, usize)>,
}

pub type Event = (&'static str, Value);

/// `message_start` and the first `ping`.
pub fn opening(id: &str, model: &str) -> Vec<Event> {
    vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ),
        ("ping", json!({"type": "ping"})),
    ]
}

impl Encoder {
    fn close(&mut self, out: &mut Vec<Event>) {
        if let Some((_, index)) = self.open.take() {
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// Opens a block of `kind` unless it is the one open; its number.
    fn ensure(&mut self, kind: Open, start: Value, out: &mut Vec<Event>) -> usize {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close(out);
        let index = self.next;
        self.next += 1;
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        self.open = Some((kind, index));
        index
    }

    fn delta(out: &mut Vec<Event>, index: usize, delta: Value) {
        out.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }

    pub fn text(&mut self, text: &str) -> Vec<Event> {
        let mut out = Vec::new();
        let index = self.ensure(Open::Text, json!({"type": "text", "text": ""}), &mut out);
        Self::delta(&mut out, index, json!({"type": "text_delta", "text": text}));
        out
    }

    pub fn reasoning(&mut self, text: &str) -> Vec<Event> {
        self.thinking(json!({"type": "thinking_delta", "thinking": text}), false)
    }

    /// The reasoning block's signature: it ends the block.
    pub fn signed(&mut self, signature: &str) -> Vec<Event> {
        self.thinking(
            json!({"type": "signature_delta", "signature": signature}),
            true,
        )
    }

    /// A delta of the thinking block (opened first when needed), closing it after `last`.
    fn thinking(&mut self, delta: Value, last: bool) -> Vec<Event> {
        let mut out = Vec::new();
        let index = self.ensure(
            Open::Thinking,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
            &mut out,
        );
        Self::delta(&mut out, index, delta);
        if last {
            self.close(&mut out);
        }
        out
    }

    pub fn tool_start(&mut self, ordinal: u32, id: &str, name: &str) -> Vec<Event> {
        let mut out = Vec::new();
        self.close(&mut out);
        let index = self.ensure(
            Open::Tool(ordinal),
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            &mut out,
        );
        self.tools.push((ordinal, index));
        out
    }

    pub fn tool_arguments(&mut self, ordinal: u32, json: &str) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(&(_, index)) = self.tools.iter().find(|(o, _)| *o == ordinal) {
            Self::delta(
                &mut out,
                index,
                json!({"type": "input_json_delta", "partial_json": json}),
            );
        }
        out
    }

    /// The end: the last block closed, the stop reason and usage, `message_stop`.
    pub fn done(&mut self, summary: &StreamSummary, quarry: Value) -> Vec<Event> {
        let mut out = Vec::new();
        self.close(&mut out);
        out.push((
            "message_delta",
            json!({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason(&summary.stop_reason), "stop_sequence": null},
                   "usage": usage(&summary.usage),
                   "quarry": quarry}),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }
}
