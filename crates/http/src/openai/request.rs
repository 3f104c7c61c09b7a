//! The request of `POST /v1/chat/completions`, and its translation to Quarry's chat input.
//!
//! Fields that do not change the answer (`store`, `user`, `seed` as best effort, zero
//! penalties, ...) are accepted; ones that would change it in a way Quarry cannot honour
//! (`n` > 1, `logprobs`, `logit_bias`, non-zero penalties, audio, ...) are refused with a 400
//! naming them: see `fields`.

use std::collections::BTreeMap;

use quarry_core::Error;
use quarry_core::chat::ChatInput;
use quarry_core::model::{
    ContentBlock, InferenceParams, Message, Role, ToolChoice, ToolResultContent, ToolSpec,
};
use quarry_core::routing::RouteSpec;
use serde::Deserialize;
use serde_json::{Value, json};

use super::content::{OaContent, ThinkingBlock, blocks_of, reasoning_blocks, text_of};
use super::legacy::{Functions, call_id};
use crate::native::{Limits, Stop, check_params, check_sizes};

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<OaMessage>,
    #[serde(default)]
    pub tools: Vec<OaTool>,
    pub tool_choice: Option<OaToolChoice>,
    pub response_format: Option<OaResponseFormat>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    pub logprobs: Option<bool>,
    /// Free-form tags; `feature` is used for cost attribution.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Quarry's extension (`extra_body`): a prompt from the registry, `NAME`, `NAME@VERSION`
    /// or `NAME:LABEL`, rendered as this turn's user message after `messages`.
    pub prompt: Option<String>,
    /// Quarry's extension: the prompt's variables.
    #[serde(default)]
    pub variables: serde_json::Map<String, Value>,
    /// Every other field of the API: refused when it would change the answer.
    #[serde(flatten)]
    pub other: super::fields::OtherFields,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum OaMessage {
    System {
        content: OaContent,
    },
    Developer {
        content: OaContent,
    },
    User {
        content: OaContent,
    },
    Assistant {
        #[serde(default)]
        content: Option<OaContent>,
        #[serde(default)]
        tool_calls: Vec<OaToolCall>,
        /// The reasoning of that turn, signed, as Quarry's answers carry it.
        #[serde(default)]
        thinking_blocks: Vec<ThinkingBlock>,
        /// Legacy function calling: the turn's one call.
        #[serde(default)]
        function_call: Option<OaFunctionCall>,
    },
    /// Legacy function calling: the result of the last call of function `name`.
    Function {
        name: String,
        content: OaContent,
    },
    Tool {
        content: OaContent,
        tool_call_id: String,
    },
}

#[derive(Debug, Deserialize)]
pub struct OaToolCall {
    pub id: String,
    pub function: OaFunctionCall,
}

#[derive(Debug, Deserialize)]
pub struct OaFunctionCall {
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct OaTool {
    pub function: OaFunction,
}

#[derive(Debug, Deserialize)]
pub struct OaFunction {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OaToolChoice {
    Mode(String),
    Function { function: OaNamed },
}

#[derive(Debug, Deserialize)]
pub struct OaNamed {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OaResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: OaJsonSchema },
}

#[derive(Debug, Deserialize)]
pub struct OaJsonSchema {
    #[allow(dead_code)]
    pub name: Option<String>,
    pub schema: Option<Value>,
}

/// Appends blocks to the conversation, merging into the last message when it has the same
/// role (Bedrock requires roles to alternate; OpenAI sends one message per tool result).
fn push(messages: &mut Vec<Message>, role: Role, blocks: Vec<ContentBlock>) {
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(Message {
            role,
            content: blocks,
        }),
    }
}

/// `tool_choice: none`, which Bedrock lacks. Without tool calls in the history, the model is
/// simply not offered the tools. With them, Bedrock refuses the history unless the tools are
/// declared: they stay, and the model is told not to call one.
pub(crate) fn no_tool(
    messages: &[Message],
    tools: &mut Vec<ToolSpec>,
    system: &mut Vec<String>,
) -> Option<ToolChoice> {
    let history_has_tools = messages.iter().any(|m| {
        m.content.iter().any(|b| {
            matches!(
                b,
                ContentBlock::ToolUse { .. } | ContentBlock::ToolResult { .. }
            )
        })
    });
    if history_has_tools {
        system.push("Do not call any tool in this turn: answer in text.".to_owned());
        Some(ToolChoice::Auto)
    } else {
        tools.clear();
        None
    }
}

/// The parsed request: what to answer and how.
pub struct Parsed {
    pub input: ChatInput,
    pub stream: bool,
    pub include_usage: bool,
    /// The request used legacy `functions`: the answer takes the legacy shape.
    pub legacy_functions: bool,
}

impl CompletionRequest {
    pub fn into_input(mut self, limits: &Limits) -> Result<Parsed, Error> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(Error::bad_request("n", "only n = 1 is supported"));
        }
        self.other.check()?;
        let prompt = match self.prompt.as_deref() {
            None => {
                if !self.variables.is_empty() {
                    return Err(Error::bad_request(
                        "variables",
                        "variables need a prompt: name one with 'prompt'",
                    ));
                }
                None
            }
            Some(reference) => {
                let (name, selector) = quarry_core::prompts::parse_reference(reference)
                    .map_err(|e| Error::bad_request("prompt", e.to_string()))?;
                Some(quarry_core::chat::PromptRef {
                    name,
                    // A bare name is the prompt's default version (label `prod`, else latest).
                    selector: match selector {
                        quarry_core::prompts::PromptSelector::Latest => None,
                        s => Some(s),
                    },
                    ab_key: None,
                })
            }
        };
        if self.logprobs == Some(true) {
            return Err(Error::bad_request(
                "logprobs",
                "logprobs are not available on Bedrock",
            ));
        }
        let (chars, media) = self
            .messages
            .iter()
            .map(|m| match m {
                OaMessage::System { content }
                | OaMessage::Developer { content }
                | OaMessage::User { content }
                | OaMessage::Tool { content, .. }
                | OaMessage::Function { content, .. } => content.size(),
                OaMessage::Assistant {
                    content,
                    tool_calls,
                    thinking_blocks: _,
                    function_call,
                } => {
                    let (c, m) = content.as_ref().map_or((0, 0), OaContent::size);
                    let args: usize = tool_calls
                        .iter()
                        .map(|c| c.function.arguments.len())
                        .sum::<usize>()
                        + function_call.as_ref().map_or(0, |f| f.arguments.len());
                    (c + args, m)
                }
            })
            .fold((0, 0), |(c, m), (c2, m2)| (c + c2, m + m2));
        // Images and documents are bounded by the body limit and Bedrock's own per-part
        // limits (checked as each is parsed); text by the character limit.
        let _ = media;
        check_sizes(limits, self.messages.len(), chars)?;

        let legacy =
            Functions::parse(self.other.functions.take(), self.other.function_call.take())?;
        if legacy.is_some() && !self.tools.is_empty() {
            return Err(Error::bad_request(
                "functions",
                "give 'tools' or the legacy 'functions', not both",
            ));
        }
        let legacy_functions = legacy.is_some();
        if let Some(f) = legacy {
            self.tools = f.tools;
            self.tool_choice = f.choice.or(self.tool_choice);
        }
        // Legacy calls without IDs: each function message answers the last call of its name.
        let mut open_calls: Vec<(String, String)> = Vec::new();
        let mut system = Vec::new();
        let mut messages: Vec<Message> = Vec::new();
        for (i, m) in self.messages.into_iter().enumerate() {
            let at = format!("messages[{i}]");
            match m {
                OaMessage::System { content } | OaMessage::Developer { content } => {
                    system.push(text_of(content, &at)?)
                }
                OaMessage::User { content } => {
                    push(&mut messages, Role::User, blocks_of(content, &at)?)
                }
                OaMessage::Assistant {
                    content,
                    mut tool_calls,
                    thinking_blocks,
                    function_call,
                } => {
                    if let Some(call) = function_call {
                        let id = call_id(i);
                        open_calls.push((call.name.clone(), id.clone()));
                        tool_calls.push(OaToolCall { id, function: call });
                    }
                    // Reasoning first, as the model wrote it.
                    let mut blocks = reasoning_blocks(thinking_blocks, &at)?;
                    if let Some(c) = content {
                        let t = text_of(c, &at)?;
                        if !t.is_empty() {
                            blocks.push(ContentBlock::Text(t));
                        }
                    }
                    for (j, call) in tool_calls.into_iter().enumerate() {
                        let input: Value =
                            serde_json::from_str(&call.function.arguments).map_err(|e| {
                                Error::bad_request(
                                    format!("{at}.tool_calls[{j}].function.arguments"),
                                    format!("arguments must be a JSON object: {e}"),
                                )
                            })?;
                        blocks.push(ContentBlock::ToolUse {
                            id: call.id,
                            name: call.function.name,
                            input,
                        });
                    }
                    if blocks.is_empty() {
                        return Err(Error::bad_request(
                            at,
                            "an assistant message needs content or tool_calls",
                        ));
                    }
                    push(&mut messages, Role::Assistant, blocks);
                }
                OaMessage::Function { name, content } => {
                    let at_name = open_calls.iter().rposition(|(n, _)| *n == name);
                    let Some(id) = at_name.map(|p| open_calls.remove(p).1) else {
                        return Err(Error::bad_request(
                            at,
                            format!(
                                "a function message answers an assistant function_call of '{name}', and there is none before it"
                            ),
                        ));
                    };
                    let text = text_of(content, &at)?;
                    push(
                        &mut messages,
                        Role::User,
                        vec![ContentBlock::ToolResult {
                            tool_use_id: id,
                            content: vec![ToolResultContent::Text(text)],
                            is_error: false,
                        }],
                    );
                }
                OaMessage::Tool {
                    content,
                    tool_call_id,
                } => {
                    let text = text_of(content, &at)?;
                    push(
                        &mut messages,
                        Role::User,
                        vec![ContentBlock::ToolResult {
                            tool_use_id: tool_call_id,
                            content: vec![ToolResultContent::Text(text)],
                            is_error: false,
                        }],
                    );
                }
            }
        }
        // A prompt renders this turn's user message itself.
        if messages.is_empty() && prompt.is_none() {
            return Err(Error::bad_request(
                "messages",
                "at least one user message is needed (or a 'prompt')",
            ));
        }

        // Bedrock's tool names: `[a-zA-Z0-9_-]{1,64}` (checked here: a 400 naming the tool,
        // not Bedrock's ValidationException after a model call was prepared).
        for (i, t) in self.tools.iter().enumerate() {
            let name = &t.function.name;
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::bad_request(
                    format!("tools[{i}].function.name"),
                    "a tool name is 1 to 64 characters of A-Z a-z 0-9 _ -",
                ));
            }
        }
        let mut tools: Vec<ToolSpec> = self
            .tools
            .into_iter()
            .map(|t| ToolSpec {
                name: t.function.name,
                description: t.function.description,
                input_schema: t
                    .function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: t.function.strict,
            })
            .collect();
        let tool_choice = match self.tool_choice {
            None => (!tools.is_empty()).then_some(ToolChoice::Auto),
            Some(OaToolChoice::Mode(m)) => match m.as_str() {
                "auto" => Some(ToolChoice::Auto),
                "required" => Some(ToolChoice::Any),
                "none" => no_tool(&messages, &mut tools, &mut system),
                other => {
                    return Err(Error::bad_request(
                        "tool_choice",
                        format!(
                            "unknown tool_choice '{other}': use none, auto, required or a function"
                        ),
                    ));
                }
            },
            Some(OaToolChoice::Function { function }) => {
                if !tools.iter().any(|t| t.name == function.name) {
                    return Err(Error::bad_request(
                        "tool_choice",
                        format!(
                            "tool_choice names '{}', which is not in tools",
                            function.name
                        ),
                    ));
                }
                Some(ToolChoice::Tool(function.name))
            }
        };
        let output_schema = match self.response_format {
            None | Some(OaResponseFormat::Text) => None,
            Some(OaResponseFormat::JsonObject) => Some(json!({"type": "object"})),
            Some(OaResponseFormat::JsonSchema { json_schema }) => Some(
                json_schema
                    .schema
                    .unwrap_or_else(|| json!({"type": "object"})),
            ),
        };
        let params = InferenceParams {
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop.map(Stop::into_vec).unwrap_or_default(),
            top_k: None,
        };
        check_params(&params)?;
        let reasoning = self.other.reasoning()?;
        let service_tier = self.other.tier()?;
        let latency_optimized = self.other.latency_optimized()?;
        let single_tool_call = self.other.parallel_tool_calls == Some(false);
        Ok(Parsed {
            input: ChatInput {
                prompt,
                variables: self.variables,
                system,
                messages,
                route: Some(RouteSpec::Model(self.model)),
                params,
                tools,
                tool_choice,
                output_schema,
                reasoning,
                service_tier,
                latency_optimized,
                single_tool_call,
                tags: {
                    let mut tags = self.metadata.unwrap_or_default();
                    // `user` goes to Bedrock's invocation logs with the tags, when it fits a
                    // tag (it changes nothing in the answer, so one that does not is left out).
                    if let Some(user) = self.other.user.as_ref().filter(|u| {
                        !u.is_empty()
                            && u.len() <= quarry_core::chat::MAX_TAG_VALUE
                            && u.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "_.:/=+@- ".contains(c))
                    }) && tags.len() < quarry_core::chat::MAX_TAGS
                    {
                        tags.entry("user".to_owned())
                            .or_insert_with(|| user.clone());
                    }
                    tags
                },
                anthropic_beta: Vec::new(),
                system_cache_point: false,
            },
            stream: self.stream,
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            legacy_functions,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::CompletionRequest;
    use crate::native::Limits;

    fn parse(messages: serde_json::Value) -> quarry_core::chat::ChatInput {
        let body = json!({
            "model": "fast", "messages": messages, "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        });
        let request: CompletionRequest = serde_json::from_value(body).unwrap();
        let limits = Limits {
            max_messages: 100,
            max_total_chars: 100_000,
        };
        request.into_input(&limits).unwrap().input
    }

    #[test]
    fn none_keeps_the_tools_a_history_with_tool_calls_needs() {
        let with_history = parse(json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ]));
        assert_eq!(
            with_history.tools.len(),
            1,
            "Bedrock refuses toolUse blocks without toolConfig"
        );
        assert_eq!(
            with_history.tool_choice,
            Some(quarry_core::model::ToolChoice::Auto)
        );
        assert!(
            with_history
                .system
                .iter()
                .any(|s| s.contains("Do not call any tool"))
        );

        let without = parse(json!([{"role": "user", "content": "hi"}]));
        assert!(without.tools.is_empty() && without.tool_choice.is_none());
    }

    fn legacy(body: serde_json::Value) -> Result<super::Parsed, quarry_core::Error> {
        let request: CompletionRequest = serde_json::from_value(body).unwrap();
        request.into_input(&Limits {
            max_messages: 100,
            max_total_chars: 100_000,
        })
    }

    #[test]
    fn legacy_functions_become_tools_and_their_results_find_their_call() {
        let f = json!([{"name": "f", "parameters": {"type": "object"}}]);
        let p = legacy(json!({"model": "fast", "functions": f, "function_call": {"name": "f"}, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{}"}},
            {"role": "function", "name": "f", "content": "done"},
        ]}))
        .unwrap();
        assert!(p.legacy_functions);
        assert_eq!(p.input.tools[0].name, "f");
        assert_eq!(
            p.input.tool_choice,
            Some(quarry_core::model::ToolChoice::Tool("f".into()))
        );
        let ids: Vec<String> = p
            .input
            .messages
            .iter()
            .flat_map(|m| m.content.iter())
            .filter_map(|b| match b {
                quarry_core::model::ContentBlock::ToolUse { id, .. } => Some(id.clone()),
                quarry_core::model::ContentBlock::ToolResult { tool_use_id, .. } => {
                    Some(tool_use_id.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["call_fn_1", "call_fn_1"]);

        for (body, field) in [
            // A result with no call before it.
            (
                json!({"model": "fast", "functions": f, "messages": [
                    {"role": "user", "content": "go"},
                    {"role": "function", "name": "f", "content": "done"}]}),
                "messages[1]",
            ),
            // Tools and functions together.
            (
                json!({"model": "fast", "functions": f, "tools": [{"type": "function", "function": {"name": "g"}}],
                       "messages": [{"role": "user", "content": "go"}]}),
                "functions",
            ),
        ] {
            let e = legacy(body).err().unwrap();
            assert_eq!(e.field(), Some(field), "{e}");
        }
    }
}
