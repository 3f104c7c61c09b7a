//! Converse JSON and the ConverseStream event sequence.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Extras, MidStreamFault, Script, Timing, Usage, json_chunks};
use crate::eventstream::{Step, event};
use crate::output::{OutBlock, Output};

pub(super) fn converse_block(block: &OutBlock) -> Value {
    match block {
        OutBlock::Reasoning { tokens, signature } => json!({
            "reasoningContent": { "reasoningText": { "text": tokens.concat(), "signature": signature } }
        }),
        OutBlock::Text(tokens) => json!({ "text": tokens.concat() }),
        OutBlock::Cited { tokens, citations } => json!({
            "citationsContent": {
                "content": [{ "text": tokens.concat() }],
                "citations": citations.iter().map(|c| c.converse_json()).collect::<Vec<_>>(),
            }
        }),
        OutBlock::ToolUse { id, name, input } => {
            json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } })
        }
    }
}

pub fn converse_response(
    output: &Output,
    usage: Usage,
    latency: Duration,
    extras: &Extras,
) -> Value {
    let mut body = json!({
        "output": {
            "message": {
                "role": "assistant",
                "content": output.blocks.iter().map(converse_block).collect::<Vec<_>>(),
            }
        },
        "stopReason": output.stop_reason.converse(),
        "usage": usage.converse_json(),
        "metrics": { "latencyMs": latency.as_millis() as u64 },
    });
    extras.annotate(&mut body);
    body
}

fn delta(index: usize, delta: Value) -> bytes::Bytes {
    event(
        "contentBlockDelta",
        &json!({ "contentBlockIndex": index, "delta": delta }),
    )
}

/// Text deltas, one per token; held by a sync guardrail, each chunk of text leaves at once
/// when the chunk has been generated (and checked).
fn text_deltas(s: &mut Script, index: usize, tokens: &[String], held: Option<usize>) {
    let Some(chunk_chars) = held else {
        for token in tokens {
            s.delta(delta(index, json!({ "text": token })));
        }
        return;
    };
    let flush = |s: &mut Script, chunk: &[String]| {
        let wait = s.timing.per_token * chunk.len() as u32;
        for (i, token) in chunk.iter().enumerate() {
            let d = if i == 0 { wait } else { Duration::ZERO };
            s.delta_after(delta(index, json!({ "text": token })), Some(d));
        }
    };
    let mut start = 0;
    let mut chars = 0;
    for (i, token) in tokens.iter().enumerate() {
        chars += token.chars().count();
        if chars >= chunk_chars {
            flush(s, tokens.get(start..=i).unwrap_or_default());
            start = i + 1;
            chars = 0;
        }
    }
    flush(s, tokens.get(start..).unwrap_or_default());
}

pub fn converse_stream_script(
    output: &Output,
    usage: Usage,
    timing: Timing,
    fault: Option<MidStreamFault>,
    extras: &Extras,
) -> Vec<Step> {
    let mut s = Script::new(timing, fault, false);
    s.push(
        event("messageStart", &json!({ "role": "assistant" })),
        timing.ttft,
    );
    for (index, block) in output.blocks.iter().enumerate() {
        match block {
            OutBlock::Reasoning { tokens, signature } => {
                for token in tokens {
                    s.delta(delta(
                        index,
                        json!({ "reasoningContent": { "text": token } }),
                    ));
                }
                s.delta(delta(
                    index,
                    json!({ "reasoningContent": { "signature": signature } }),
                ));
            }
            OutBlock::Text(tokens) => text_deltas(&mut s, index, tokens, extras.held_chunk_chars),
            OutBlock::Cited { tokens, citations } => {
                text_deltas(&mut s, index, tokens, extras.held_chunk_chars);
                for citation in citations {
                    s.delta(delta(
                        index,
                        json!({ "citation": citation.converse_json() }),
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
                    s.delta(delta(index, json!({ "toolUse": { "input": chunk } })));
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
    let mut metadata = json!({
        "usage": usage.converse_json(),
        "metrics": { "latencyMs": latency.as_millis() as u64 },
    });
    extras.annotate(&mut metadata);
    s.push(event("metadata", &metadata), Duration::ZERO);
    s.steps
}
