//! The `chat.completion.chunk`s of a stream, as the OpenAI clients parse them: keys OpenAI
//! always sends are always sent (a chunk's `finish_reason` is `null` until the end), keys it
//! leaves out when empty are left out.

use quarry_core::model::{Citation, TokenUsage};
use serde::Serialize;
use serde_json::Value;

use super::response::{Extras, Usage};

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice<'a>>,
    pub service_tier: &'static str,
    /// Only on the last chunk, when the client asked for usage (and then `choices` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// With the usage: what the stream cost, and whether it came from the cache, as on a
    /// whole answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarry: Option<Extras>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice<'a> {
    pub index: u32,
    pub delta: Delta<'a>,
    pub finish_reason: Option<&'static str>,
    pub logprobs: Option<()>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta<'a>>,
    /// Legacy function calling: the one call, name first, then its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionDelta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// On the last content chunk: the reasoning blocks with their signatures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub citations: &'a [Citation],
}

/// A tool call as it streams: `id`, `type` and the name come once, with the call's first
/// chunk; the arguments follow in pieces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

impl<'a> Delta<'a> {
    /// The first chunk's: who speaks, before any content.
    pub fn opening() -> Self {
        Self {
            role: Some("assistant"),
            content: Some(""),
            ..Self::default()
        }
    }

    pub fn text(text: &'a str) -> Self {
        Self {
            content: Some(text),
            ..Self::default()
        }
    }

    /// A legacy `function_call` piece: the name with the first, arguments after.
    pub fn function(name: Option<&'a str>, arguments: &'a str) -> Self {
        Self {
            function_call: Some(FunctionDelta { name, arguments }),
            ..Self::default()
        }
    }

    pub fn reasoning(text: &'a str) -> Self {
        Self {
            reasoning_content: Some(text),
            ..Self::default()
        }
    }

    pub fn tool_start(index: u32, id: &'a str, name: &'a str) -> Self {
        Self::tool(ToolCallDelta {
            index,
            id: Some(id),
            kind: Some("function"),
            function: FunctionDelta {
                name: Some(name),
                arguments: "",
            },
        })
    }

    pub fn tool_arguments(index: u32, json: &'a str) -> Self {
        Self::tool(ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments: json,
            },
        })
    }

    fn tool(call: ToolCallDelta<'a>) -> Self {
        Self {
            tool_calls: vec![call],
            ..Self::default()
        }
    }
}

/// What every chunk of one stream repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHead<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    /// The tier asked for while the stream runs; the last chunk says the one that served.
    pub service_tier: &'static str,
}

impl<'a> ChunkHead<'a> {
    pub fn chunk(&self, delta: Delta<'a>, finish_reason: Option<&'static str>) -> Chunk<'a> {
        self.with(
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason,
                logprobs: None,
            }],
            None,
        )
    }

    /// The last chunk, for a client that asked for usage: no choices, the usage, and
    /// Quarry's cost and cache flag.
    pub fn usage(&self, usage: &TokenUsage, extras: Extras) -> Chunk<'a> {
        Chunk {
            cost_usd: extras.cost_usd.clone(),
            cached: Some(extras.cached),
            quarry: Some(extras),
            ..self.with(Vec::new(), Some(usage.into()))
        }
    }

    fn with(&self, choices: Vec<ChunkChoice<'a>>, usage: Option<Usage>) -> Chunk<'a> {
        Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            choices,
            service_tier: self.service_tier,
            usage,
            cost_usd: None,
            cached: None,
            quarry: None,
        }
    }
}
