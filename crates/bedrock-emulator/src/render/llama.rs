//! Meta Llama's InvokeModel answer and its stream chunks. The emulator's stand-in body,
//! for providers whose native bodies it does not speak, is answered in this shape too.

use std::time::Duration;

use serde_json::{Value, json};

use super::{MidStreamFault, Script, Timing, Usage, chunk, invocation_metrics};
use crate::eventstream::Step;
use crate::output::{OutBlock, Output, StopReason};

fn llama_stop(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

/// The Llama InvokeModel response body.
pub fn llama_response(output: &Output, usage: Usage) -> Value {
    json!({
        "generation": output.text(),
        "prompt_token_count": usage.input + usage.cache_read + usage.cache_write,
        "generation_token_count": usage.output,
        "stop_reason": llama_stop(output.stop_reason),
    })
}

pub fn llama_stream_script(
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
            OutBlock::Text(tokens) | OutBlock::Cited { tokens, .. } => tokens.clone(),
            OutBlock::ToolUse { input, .. } => vec![input.to_string()],
            // Only Anthropic models think, and they answer in the Anthropic body.
            OutBlock::Reasoning { .. } => Vec::new(),
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
            "stop_reason": llama_stop(output.stop_reason),
            "amazon-bedrock-invocationMetrics": invocation_metrics(usage, timing, output.output_tokens),
        })),
        Duration::ZERO,
    );
    s.steps
}
