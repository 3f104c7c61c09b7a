//! Amazon Nova's InvokeModel answer and its stream chunks. Nova answers InvokeModel in
//! Converse's shapes, with usage named its own way (`cacheReadInputTokenCount`,
//! `cacheWriteInputTokenCount`), and streams each Converse event as a chunk of its own
//! (`{"contentBlockDelta": {...}}`), the last one carrying Bedrock's invocation metrics.

use std::time::Duration;

use serde_json::{Value, json};

use super::converse::converse_block;
use super::{MidStreamFault, Script, Timing, Usage, chunk, invocation_metrics, json_chunks};
use crate::eventstream::Step;
use crate::output::{OutBlock, Output};

fn nova_usage(usage: Usage) -> Value {
    json!({
        "inputTokens": usage.input,
        "outputTokens": usage.output,
        "totalTokens": usage.total(),
        "cacheReadInputTokenCount": usage.cache_read,
        "cacheWriteInputTokenCount": usage.cache_write,
    })
}

/// The Nova InvokeModel response body.
pub fn nova_response(output: &Output, usage: Usage) -> Value {
    json!({
        "output": {
            "message": {
                "role": "assistant",
                "content": output.blocks.iter().map(converse_block).collect::<Vec<_>>(),
            }
        },
        "stopReason": output.stop_reason.converse(),
        "usage": nova_usage(usage),
    })
}

fn delta(index: usize, delta: Value) -> bytes::Bytes {
    chunk(&json!({ "contentBlockDelta": { "delta": delta, "contentBlockIndex": index } }))
}

pub fn nova_stream_script(
    output: &Output,
    usage: Usage,
    timing: Timing,
    fault: Option<MidStreamFault>,
) -> Vec<Step> {
    let mut s = Script::new(timing, fault, true);
    s.push(
        chunk(&json!({ "messageStart": { "role": "assistant" } })),
        timing.ttft,
    );
    for (index, block) in output.blocks.iter().enumerate() {
        match block {
            OutBlock::Reasoning { tokens, .. } => {
                for token in tokens {
                    s.delta(delta(
                        index,
                        json!({ "reasoningContent": { "text": token } }),
                    ));
                }
            }
            OutBlock::Text(tokens) | OutBlock::Cited { tokens, .. } => {
                for token in tokens {
                    s.delta(delta(index, json!({ "text": token })));
                }
            }
            OutBlock::ToolUse { id, name, input } => {
                s.push(
                    chunk(&json!({ "contentBlockStart": {
                        "start": { "toolUse": { "toolUseId": id, "name": name } },
                        "contentBlockIndex": index,
                    }})),
                    Duration::ZERO,
                );
                for part in json_chunks(input) {
                    s.delta(delta(index, json!({ "toolUse": { "input": part } })));
                }
            }
        }
        s.push(
            chunk(&json!({ "contentBlockStop": { "contentBlockIndex": index } })),
            Duration::ZERO,
        );
    }
    s.finish_content();
    s.push(
        chunk(&json!({ "messageStop": { "stopReason": output.stop_reason.converse() } })),
        Duration::ZERO,
    );
    let mut usage_json = nova_usage(usage);
    if let Some(usage_obj) = usage_json.as_object_mut() {
        // The stream's metadata counts tokens in and out, without a total.
        usage_obj.remove("totalTokens");
    }
    s.push(
        chunk(&json!({
            "metadata": { "usage": usage_json, "metrics": {}, "trace": {} },
            "amazon-bedrock-invocationMetrics": invocation_metrics(usage, timing, output.output_tokens),
        })),
        Duration::ZERO,
    );
    s.steps
}
