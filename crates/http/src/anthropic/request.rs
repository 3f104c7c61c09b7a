//! The request of `POST /v1/messages` (Anthropic's Messages API, as Claude Code and the
//! official SDKs send it), and its translation to Quarry's chat input.

use std::collections::BTreeMap;

use quarry_core::Error;
use quarry_core::chat::ChatInput;
use quarry_core::model::{
    ContentBlock, InferenceParams, Message, ReasoningRequest, Role, ToolChoice,
};
use quarry_core::routing::RouteSpec;
use serde::Deserialize;
use serde_json::Value;

use super::blocks::{bad, blocks, chars_of, tool};
use crate::native::{Limits, check_params, check_sizes};

#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    /// Required by `/v1/messages`; `count_tokens` takes none.
    pub max_tokens: Option<u32>,
    pub messages: Vec<InMessage>,
    pub system: Option<System>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub tools: Vec<Value>,
    pub tool_choice: Option<InToolChoice>,
    pub thinking: Option<Thinking>,
    pub metadata: Option<Metadata>,
    /// `auto` or `standard_only`: Anthropic's own tiers; Bedrock's default serves both.
    pub service_tier: Option<String>,
    /// Features Bedrock does not offer: refused by name when set.
    pub mcp_servers: Option<Value>,
    pub container: Option<Value>,
    pub context_management: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<InBlock>),
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: Role,
    pub content: InContent,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InContent {
    Text(String),
    Blocks(Vec<InBlock>),
}

/// A content block, with the `cache_control` any block may carry.
#[derive(Debug, Deserialize)]
pub struct InBlock {
    #[serde(flatten)]
    pub kind: BlockKind,
    pub cache_control: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockKind {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
        title: Option<String>,
        citations: Option<CitationsParam>,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<ToolResultContentIn>,
        #[serde(default)]
        is_error: bool,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContentIn {
    Text(String),
    Blocks(Vec<InBlock>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    Base64 { media_type: String, data: String },
    Text { data: String },
    Url { url: String },
    Content { content: Vec<InBlock> },
    File { file_id: String },
}

#[derive(Debug, Deserialize)]
pub struct CitationsParam {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: bool,
    },
    None,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Thinking {
    Enabled { budget_tokens: u32 },
    Disabled,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub user_id: Option<String>,
}

/// The parsed request: what to answer and how.
pub struct Parsed {
    pub input: ChatInput,
    pub stream: bool,
}

impl MessagesRequest {
    /// The input of `count_tokens`: the same body, `max_tokens` optional.
    pub fn into_count_input(mut self, limits: &Limits) -> Result<ChatInput, Error> {
        if self.max_tokens.is_none() {
            self.max_tokens = Some(match &self.thinking {
                Some(Thinking::Enabled { budget_tokens }) => budget_tokens.saturating_add(1),
                _ => 1,
            });
        }
        self.into_input(limits, Vec::new()).map(|p| p.input)
    }

    /// The chat input. `betas` are the `anthropic-beta` header's features that Bedrock takes.
    pub fn into_input(self, limits: &Limits, betas: Vec<String>) -> Result<Parsed, Error> {
        let max_tokens = self
            .max_tokens
            .ok_or_else(|| bad("max_tokens", "max_tokens is required"))?;
        for (field, set) in [
            ("mcp_servers", self.mcp_servers.is_some()),
            ("container", self.container.is_some()),
            ("context_management", self.context_management.is_some()),
        ] {
            if set {
                return Err(bad(
                    field,
                    format!("'{field}' is not available through Bedrock"),
                ));
            }
        }
        if let Some(tier) = &self.service_tier
            && !matches!(tier.as_str(), "auto" | "standard_only")
        {
            return Err(bad(
                "service_tier",
                "service_tier is 'auto' or 'standard_only'",
            ));
        }
        let chars = self
            .messages
            .iter()
            .map(|m| match &m.content {
                InContent::Text(t) => t.len(),
                InContent::Blocks(b) => chars_of(b),
            })
            .sum::<usize>()
            + match &self.system {
                Some(System::Text(t)) => t.len(),
                Some(System::Blocks(b)) => chars_of(b),
                None => 0,
            };
        check_sizes(limits, self.messages.len(), chars)?;

        let mut documents = 0;
        let mut system = Vec::new();
        let mut system_cache = false;
        match self.system {
            None => {}
            Some(System::Text(t)) => system.push(t),
            Some(System::Blocks(list)) => {
                for (j, b) in list.into_iter().enumerate() {
                    match b.kind {
                        BlockKind::Text { text } => system.push(text),
                        _ => {
                            return Err(bad(
                                format!("system[{j}]"),
                                "system blocks are text blocks",
                            ));
                        }
                    }
                    system_cache |= b.cache_control.is_some();
                }
            }
        }
        let mut messages: Vec<Message> = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let at = format!("messages[{i}]");
            let content = match m.content {
                InContent::Text(t) => vec![ContentBlock::Text(t)],
                InContent::Blocks(list) => blocks(list, &at, &mut documents)?,
            };
            if content.is_empty() {
                return Err(bad(at, "a message needs content"));
            }
            messages.push(Message {
                role: m.role,
                content,
            });
        }
        if messages.is_empty() {
            return Err(bad("messages", "at least one message is needed"));
        }

        let tools = self
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| tool(t, i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut single_tool_call = false;
        let mut tool_choice = match self.tool_choice {
            None => (!tools.is_empty()).then_some(ToolChoice::Auto),
            Some(InToolChoice::Auto {
                disable_parallel_tool_use,
            }) => {
                single_tool_call = disable_parallel_tool_use;
                Some(ToolChoice::Auto)
            }
            Some(InToolChoice::Any {
                disable_parallel_tool_use,
            }) => {
                single_tool_call = disable_parallel_tool_use;
                Some(ToolChoice::Any)
            }
            Some(InToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            }) => {
                if !tools.iter().any(|t| t.name == name) {
                    return Err(bad(
                        "tool_choice.name",
                        format!("tool_choice names '{name}', which is not in tools"),
                    ));
                }
                single_tool_call = disable_parallel_tool_use;
                Some(ToolChoice::Tool(name))
            }
            Some(InToolChoice::None) => None,
        };
        let mut tools = tools;
        if tool_choice.is_none() && !tools.is_empty() {
            tool_choice = crate::openai::request::no_tool(&messages, &mut tools, &mut system);
        }
        let reasoning = match self.thinking {
            Some(Thinking::Enabled { budget_tokens }) => {
                if budget_tokens < 1_024 {
                    return Err(bad(
                        "thinking.budget_tokens",
                        "thinking.budget_tokens is at least 1024",
                    ));
                }
                if budget_tokens >= max_tokens {
                    return Err(bad(
                        "max_tokens",
                        "max_tokens must be greater than thinking.budget_tokens",
                    ));
                }
                Some(ReasoningRequest {
                    effort: None,
                    budget_tokens: Some(budget_tokens),
                })
            }
            Some(Thinking::Disabled) | None => None,
        };
        let params = InferenceParams {
            max_tokens: Some(max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop_sequences,
            top_k: self.top_k,
        };
        check_params(&params)?;
        if params.top_k == Some(0) {
            return Err(bad("top_k", "top_k is at least 1"));
        }
        let mut tags = BTreeMap::new();
        // The user goes to Bedrock's invocation logs when it fits a tag.
        if let Some(user) = self.metadata.and_then(|m| m.user_id).filter(|u| {
            quarry_core::chat::check_tags(&BTreeMap::from([("user".into(), u.clone())])).is_ok()
        }) {
            tags.insert("user".to_owned(), user);
        }
        let mut input = ChatInput {
            system,
            messages,
            route: Some(RouteSpec::Model(self.model)),
            params,
            tools,
            tool_choice,
            tags,
            reasoning,
            single_tool_call,
            anthropic_beta: betas,
            ..Default::default()
        };
        if system_cache {
            input.system_cache_point = true;
        }
        Ok(Parsed {
            input,
            stream: self.stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<Parsed, Error> {
        let request: MessagesRequest = serde_json::from_value(body).unwrap();
        request.into_input(
            &Limits {
                max_messages: 100,
                max_total_chars: 100_000,
            },
            Vec::new(),
        )
    }

    #[test]
    fn blocks_that_cannot_be_sent_are_refused_by_name_never_dropped() {
        let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}});
        for (content, field) in [
            // An image inside a tool result.
            (
                json!([{"type": "tool_result", "tool_use_id": "t1", "content": [image.clone()]}]),
                "messages[0].content[0]",
            ),
            // An image inside a content document.
            (
                json!([{"type": "document", "source": {"type": "content", "content": [image]}}]),
                "messages[0].content[0]",
            ),
            // A server tool's result.
            (
                json!([{"type": "web_search_tool_result", "tool_use_id": "t1", "content": []}]),
                "messages[0].content[0]",
            ),
        ] {
            let e = parse(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}))
                .err()
                .unwrap();
            assert_eq!(e.field(), Some(field), "{e}");
        }
    }

    #[test]
    fn reasoning_goes_first_and_cache_control_marks_a_checkpoint() {
        let p = parse(json!({"model": "m", "max_tokens": 2000, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "answer", "cache_control": {"type": "ephemeral"}},
                {"type": "thinking", "thinking": "hmm", "signature": "sig"}]}]}))
        .unwrap();
        let content = &p.input.messages[1].content;
        assert!(
            matches!(content[0], ContentBlock::Reasoning { .. }),
            "{content:?}"
        );
        assert_eq!(content[1], ContentBlock::Text("answer".into()));
        assert_eq!(content[2], ContentBlock::CachePoint);
    }
}
