//! Anthropic's Messages API (`POST /v1/messages`), so Claude Code and the official
//! `anthropic` SDKs work through Quarry unmodified. Requests reach Bedrock through Converse,
//! like the other chat APIs: one pipeline (auth, limits, guardrails, budgets, fallback before
//! the first byte, cache, ledger), and the ledger is Bedrock's usage, cache tokens included.
//!
//! [`request`] reads what the clients send (`blocks` turns its content into Quarry's); [`response`] is the `message` object and the
//! error shape; [`events`] the stream's event sequence.

mod blocks;
pub mod events;
pub mod request;
pub mod response;

pub use request::{MessagesRequest, Parsed};
pub use response::{Message, error_body, error_type};

/// Anthropic beta features Bedrock accepts (`additionalModelRequestFields.anthropic_beta`);
/// every other `anthropic-beta` value is dropped (it names a feature of Anthropic's own API,
/// or one that is generally available and needs no flag). The README lists both.
pub const BEDROCK_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
];

/// The `anthropic-beta` header's features Bedrock takes, in order, without repeats.
pub fn bedrock_betas(header: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for beta in header.unwrap_or_default().split(',').map(str::trim) {
        if BEDROCK_BETAS.contains(&beta) && !out.iter().any(|b| b == beta) {
            out.push(beta.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_betas_bedrock_takes_pass() {
        assert_eq!(
            bedrock_betas(Some(
                "claude-code-20250219, interleaved-thinking-2025-05-14,oauth-2025-04-20,interleaved-thinking-2025-05-14"
            )),
            ["interleaved-thinking-2025-05-14"]
        );
        assert!(bedrock_betas(None).is_empty());
    }
}
