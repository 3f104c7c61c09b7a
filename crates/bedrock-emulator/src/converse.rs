//! The Converse request as Bedrock's wire protocol carries it, Bedrock's validation of it,
//! and its normalisation into a [`Prompt`] that generation works on.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::catalog::ResolvedModel;
use crate::error::BedrockError;
use crate::generate::count_tokens;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConverseBody {
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Vec<SystemBlock>,
    #[serde(default)]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default)]
    pub tool_config: Option<ToolConfig>,
    #[serde(default)]
    pub guardrail_config: Option<GuardrailConfig>,
    #[serde(default)]
    pub additional_model_request_fields: Option<Value>,
    #[serde(default)]
    pub additional_model_response_field_paths: Option<Vec<String>>,
    #[serde(default)]
    pub prompt_variables: Option<Value>,
    #[serde(default)]
    pub request_metadata: Option<Value>,
    #[serde(default)]
    pub performance_config: Option<Value>,
    #[serde(default)]
    pub service_tier: Option<Value>,
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// A content block: a union, serialised as an object with exactly one member.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    Text(String),
    Image(Value),
    Document(Value),
    Video(Value),
    Audio(Value),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    GuardContent(Value),
    CachePoint(Value),
    ReasoningContent(Value),
    CitationsContent(Value),
    SearchResult(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    #[allow(dead_code)]
    pub r#type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default)]
    pub content: Vec<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub status: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub r#type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemBlock {
    Text(String),
    GuardContent(Value),
    CachePoint(Value),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceConfig {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop_sequences: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolConfig {
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoiceWire>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    ToolSpec(ToolSpecWire),
    CachePoint(Value),
    SystemTool(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpecWire {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_schema: ToolInputSchema,
    #[serde(default)]
    #[allow(dead_code)]
    pub strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolInputSchema {
    Json(Value),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoiceWire {
    Auto(Value),
    Any(Value),
    Tool(NamedTool),
}

#[derive(Debug, Deserialize)]
pub struct NamedTool {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailConfig {
    pub guardrail_identifier: String,
    pub guardrail_version: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub trace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub stream_processing_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputConfig {
    #[serde(default)]
    pub text_format: Option<TextFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextFormat {
    #[serde(default)]
    pub structure: Option<FormatStructure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FormatStructure {
    JsonSchema(JsonSchemaDefinition),
}

#[derive(Debug, Deserialize)]
pub struct JsonSchemaDefinition {
    /// The schema, as a JSON document in a string.
    pub schema: String,
}

/// What the caller may make the model do with tools.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Any,
    Tool(String),
}

#[derive(Debug, Clone)]
pub struct ToolDef {
    pub name: String,
    pub schema: Value,
}

/// A request normalised for generation, whatever API it came through.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Seed material: same request, same output.
    pub fingerprint: Vec<u8>,
    pub max_tokens: u32,
    pub stop_sequences: Vec<String>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: ToolChoice,
    /// Set when the caller asked for JSON output matching this schema.
    pub json_schema: Option<Value>,
    /// The last user message's text (tool selection looks at it).
    pub last_user_text: String,
    /// True when the last message carries tool results.
    pub answering_tool_result: bool,
    /// All input tokens, cached prefix included.
    pub input_tokens: u32,
    /// Tokens covered by the last cache checkpoint, and a hash of that prefix.
    pub cache_prefix: Option<(u32, [u8; 32])>,
    /// Input text in order (system then messages): what guardrails inspect.
    pub input_texts: Vec<String>,
    pub guardrail: Option<(String, String)>,
}

const MESSAGE_OVERHEAD_TOKENS: u32 = 4;
const IMAGE_TOKENS: u32 = 1600;
const DOCUMENT_TOKENS: u32 = 500;

/// Accumulates input tokens and the hash of everything before each cache checkpoint.
struct TokenTally {
    tokens: u32,
    hasher: Sha256,
    cache_prefix: Option<(u32, [u8; 32])>,
    has_cache_point: bool,
}

impl TokenTally {
    fn new(model: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        Self {
            tokens: 0,
            hasher,
            cache_prefix: None,
            has_cache_point: false,
        }
    }

    fn add_text(&mut self, text: &str) {
        self.tokens += count_tokens(text);
        self.hasher.update(text.as_bytes());
        self.hasher.update([0]);
    }

    fn add_fixed(&mut self, tokens: u32, material: &[u8]) {
        self.tokens += tokens;
        self.hasher.update(material);
    }

    fn cache_point(&mut self) {
        self.has_cache_point = true;
        self.cache_prefix = Some((self.tokens, self.hasher.clone().finalize().into()));
    }
}

/// Converse `requestMetadata`: at most 16 entries; keys 1 to 256 and values 0 to 256
/// characters of `[a-zA-Z0-9\s:_@$#=/+,-.]`.
fn validate_request_metadata(metadata: Option<&Value>) -> Result<(), BedrockError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let map = metadata.as_object().ok_or_else(|| {
        BedrockError::validation("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must be a map")
    })?;
    if map.len() > 16 {
        return Err(BedrockError::validation(
            "1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Member must have length less than or equal to 16",
        ));
    }
    let allowed = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || ":_@$#=/+,-.".contains(c))
    };
    for (key, value) in map {
        let value = value.as_str().unwrap_or("\u{0}");
        if key.is_empty()
            || key.len() > 256
            || !allowed(key)
            || value.len() > 256
            || !allowed(value)
        {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Map keys and values must satisfy regular expression pattern: [a-zA-Z0-9\\s:_@$#=/+,-.]{{0,256}} (key '{key}')"
            )));
        }
    }
    Ok(())
}

impl ConverseBody {
    /// Parses a Converse body; anything that is not one is Bedrock's ValidationException.
    pub fn parse(value: Value) -> Result<Self, BedrockError> {
        serde_json::from_value(value).map_err(|e| {
            BedrockError::validation(format!(
                "Malformed input request: {e}, please reformat your input and try again."
            ))
        })
    }

    /// Bedrock's checks, then the normalised prompt.
    pub fn into_prompt(
        self,
        model: &ResolvedModel,
        fingerprint: Vec<u8>,
    ) -> Result<Prompt, BedrockError> {
        let spec = &model.spec;
        validate_messages(&self.messages)?;
        validate_request_metadata(self.request_metadata.as_ref())?;
        let inference = self.inference_config.unwrap_or_default();
        let max_tokens = validate_inference(&inference, spec.max_output_tokens)?;

        let mut tally = TokenTally::new(&model.base_id);
        let mut tools = Vec::new();
        let mut tool_choice = ToolChoice::None;
        if let Some(config) = self.tool_config {
            if !spec.tool_use && !config.tools.is_empty() {
                return Err(BedrockError::validation(
                    "This model doesn't support tool use.",
                ));
            }
            for tool in config.tools {
                match tool {
                    Tool::ToolSpec(t) => {
                        let ToolInputSchema::Json(schema) = t.input_schema;
                        tally.add_text(&t.name);
                        if let Some(d) = &t.description {
                            tally.add_text(d);
                        }
                        tally.add_text(&schema.to_string());
                        tools.push(ToolDef {
                            name: t.name,
                            schema,
                        });
                    }
                    Tool::CachePoint(_) => tally.cache_point(),
                    Tool::SystemTool(v) => tally.add_text(&v.to_string()),
                }
            }
            if tools.is_empty() {
                return Err(BedrockError::validation(
                    "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
                ));
            }
            tool_choice = match config.tool_choice {
                None | Some(ToolChoiceWire::Auto(_)) => ToolChoice::Auto,
                Some(ToolChoiceWire::Any(_)) => ToolChoice::Any,
                Some(ToolChoiceWire::Tool(named)) => {
                    if !tools.iter().any(|t| t.name == named.name) {
                        return Err(BedrockError::validation(format!(
                            "The tool {} in toolChoice is not defined in toolConfig.tools.",
                            named.name
                        )));
                    }
                    ToolChoice::Tool(named.name)
                }
            };
        }

        let mut input_texts = Vec::new();
        for block in &self.system {
            match block {
                SystemBlock::Text(text) => {
                    if text.trim().is_empty() {
                        return Err(BedrockError::validation(
                            "The text field in the SystemContentBlock object is blank. Add text to the text field, and try again.",
                        ));
                    }
                    tally.add_text(text);
                    input_texts.push(text.clone());
                }
                SystemBlock::GuardContent(v) => tally.add_text(&v.to_string()),
                SystemBlock::CachePoint(_) => tally.cache_point(),
            }
        }

        let mut uses_tool_blocks = false;
        for (i, message) in self.messages.iter().enumerate() {
            tally.add_fixed(
                MESSAGE_OVERHEAD_TOKENS,
                if message.role == Role::User {
                    b"u"
                } else {
                    b"a"
                },
            );
            for (j, block) in message.content.iter().enumerate() {
                match block {
                    ContentBlock::Text(text) => {
                        if text.trim().is_empty() {
                            return Err(BedrockError::validation(format!(
                                "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                            )));
                        }
                        tally.add_text(text);
                        input_texts.push(text.clone());
                    }
                    ContentBlock::ToolUse(t) => {
                        uses_tool_blocks = true;
                        tally.add_text(&t.tool_use_id);
                        tally.add_text(&t.name);
                        tally.add_text(&t.input.to_string());
                    }
                    ContentBlock::ToolResult(r) => {
                        uses_tool_blocks = true;
                        tally.add_text(&r.tool_use_id);
                        for part in &r.content {
                            tally.add_text(&part.to_string());
                        }
                    }
                    ContentBlock::Image(v) | ContentBlock::Video(v) | ContentBlock::Audio(v) => {
                        tally.add_fixed(IMAGE_TOKENS, v.to_string().as_bytes());
                    }
                    ContentBlock::Document(v) => {
                        tally.add_fixed(DOCUMENT_TOKENS, v.to_string().as_bytes());
                    }
                    ContentBlock::GuardContent(v)
                    | ContentBlock::ReasoningContent(v)
                    | ContentBlock::CitationsContent(v)
                    | ContentBlock::SearchResult(v) => tally.add_text(&v.to_string()),
                    ContentBlock::CachePoint(_) => tally.cache_point(),
                }
            }
        }
        if uses_tool_blocks && tools.is_empty() {
            return Err(BedrockError::validation(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
            ));
        }
        if tally.has_cache_point && !spec.prompt_caching {
            return Err(BedrockError::validation(
                "You invoked an unsupported model or your request did not allow prompt caching. See the documentation for more information.",
            ));
        }
        if tally.tokens > spec.context_window {
            return Err(BedrockError::validation(
                "Input is too long for requested model.",
            ));
        }

        let last = self.messages.last();
        let last_user_text = last
            .filter(|m| m.role == Role::User)
            .map(|m| {
                m.content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let answering_tool_result = last
            .map(|m| {
                m.content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::ToolResult(_)))
            })
            .unwrap_or(false);

        let json_schema = match self
            .output_config
            .and_then(|o| o.text_format)
            .and_then(|f| f.structure)
        {
            Some(FormatStructure::JsonSchema(def)) => {
                Some(serde_json::from_str(&def.schema).map_err(|e| {
                    BedrockError::validation(format!(
                        "The JSON schema in outputConfig is not valid JSON: {e}"
                    ))
                })?)
            }
            None => None,
        };

        let cache_prefix = tally
            .cache_prefix
            .filter(|(tokens, _)| *tokens >= spec.cache_min_tokens);
        Ok(Prompt {
            fingerprint,
            max_tokens,
            stop_sequences: inference.stop_sequences,
            tools,
            tool_choice,
            json_schema,
            last_user_text,
            answering_tool_result,
            input_tokens: tally.tokens,
            cache_prefix,
            input_texts,
            guardrail: self
                .guardrail_config
                .map(|g| (g.guardrail_identifier, g.guardrail_version)),
        })
    }
}

fn validate_messages(messages: &[Message]) -> Result<(), BedrockError> {
    match messages.first() {
        None => {
            return Err(BedrockError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        Some(first) if first.role != Role::User => {
            return Err(BedrockError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        Some(_) => {}
    }
    for (i, pair) in messages.windows(2).enumerate() {
        if let [a, b] = pair
            && a.role == b.role
        {
            return Err(BedrockError::validation(format!(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again. (messages.{} and messages.{} are both {:?})",
                i,
                i + 1,
                a.role
            )));
        }
    }
    for (i, message) in messages.iter().enumerate() {
        if message.content.is_empty() {
            return Err(BedrockError::validation(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            )));
        }
    }
    Ok(())
}

fn validate_inference(config: &InferenceConfig, model_max: u32) -> Result<u32, BedrockError> {
    let max_tokens = match config.max_tokens {
        None => model_max,
        Some(n) if n < 1 => {
            return Err(BedrockError::validation(format!(
                "1 validation error detected: Value '{n}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )));
        }
        Some(n) if n > i64::from(model_max) => {
            return Err(BedrockError::validation(format!(
                "The maximum tokens you requested exceeds the model limit of {model_max}. Try again with a maximum tokens value that is lower than {model_max}."
            )));
        }
        Some(n) => n as u32,
    };
    if let Some(t) = config.temperature
        && !(0.0..=1.0).contains(&t)
    {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{t}' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value between 0 and 1"
        )));
    }
    if let Some(p) = config.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(BedrockError::validation(format!(
            "1 validation error detected: Value '{p}' at 'inferenceConfig.topP' failed to satisfy constraint: Member must have value between 0 and 1"
        )));
    }
    if config.stop_sequences.len() > 2500 || config.stop_sequences.iter().any(String::is_empty) {
        return Err(BedrockError::validation(
            "1 validation error detected: Value at 'inferenceConfig.stopSequences' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    Ok(max_tokens)
}
