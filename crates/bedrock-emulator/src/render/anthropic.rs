//! The Anthropic Messages body of InvokeModel and its stream chunks.

use std::time::Duration;

use serde_json::{Value, json};

use super::{MidStreamFault, Script, Timing, Usage, chunk, invocation_metrics, json_chunks};
use crate::eventstream::Step;
use crate::output::{OutBlock, Output, StopReason};

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
        OutBlock::Reasoning { tokens, signature } => {
            json!({ "type": "thinking", "thinking": tokens.concat(), "signature": signature })
        }
        OutBlock::Text(tokens) => json!({ "type": "text", "text": tokens.concat() }),
        OutBlock::Cited { tokens, citations } => json!({
            "type": "text",
            "text": tokens.concat(),
            "citations": citations.iter().map(|c| c.anthropic_json()).collect::<Vec<_>>(),
        }),
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

fn delta(index: usize, delta: Value) -> bytes::Bytes {
    chunk(&json!({ "type": "content_block_delta", "index": index, "delta": delta }))
}

fn block_start(s: &mut Script, index: usize, content_block: Value) {
    s.push(
        chunk(&json!({ "type": "content_block_start", "index": index, "content_block": content_block })),
        Duration::ZERO,
    );
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
            OutBlock::Reasoning { tokens, signature } => {
                block_start(&mut s, index, json!({ "type": "thinking", "thinking": "" }));
                for token in tokens {
                    s.delta(delta(
                        index,
                        json!({ "type": "thinking_delta", "thinking": token }),
                    ));
                }
                s.delta(delta(
                    index,
                    json!({ "type": "signature_delta", "signature": signature }),
                ));
            }
            OutBlock::Text(tokens) | OutBlock::Cited { tokens, .. } => {
                block_start(&mut s, index, json!({ "type": "text", "text": "" }));
                for token in tokens {
                    s.delta(delta(index, json!({ "type": "text_delta", "text": token })));
                }
                if let OutBlock::Cited { citations, .. } = block {
                    for citation in citations {
                        s.delta(delta(
                            index,
                            json!({ "type": "citations_delta", "citation": citation.anthropic_json() }),
                        ));
                    }
                }
            }
            OutBlock::ToolUse { id, name, input } => {
                block_start(
                    &mut s,
                    index,
                    json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                );
                for part in json_chunks(input) {
                    s.delta(delta(
                        index,
                        json!({ "type": "input_json_delta", "partial_json": part }),
                    ));
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
