//! The Converse request as Bedrock's wire protocol carries it, Bedrock's validation of it,
//! and its normalisation into a [`Prompt`] that generation works on.

use serde::Deserialize;
use serde_json::Value;

use crate::catalog::ResolvedModel;
use crate::content::{At, Document, IMAGE_TOKENS, MediaCheck};
use crate::error::BedrockError;
use crate::guarded::GuardrailRequest;
use crate::reasoning;
use crate::serving::{PerformanceConfigWire, ServiceTierWire, Serving, serving};
use crate::tally::{CachePrefix, TokenTally};
use crate::tools::{self, ToolChoice, ToolConfig, ToolDef};
use crate::validate::{validate_inference, validate_messages, validate_request_metadata};

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
    pub performance_config: Option<PerformanceConfigWire>,
    #[serde(default)]
    pub service_tier: Option<ServiceTierWire>,
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
#[serde(rename_all = "camelCase")]
pub struct GuardrailConfig {
    pub guardrail_identifier: String,
    pub guardrail_version: String,
    #[serde(default)]
    pub trace: Option<String>,
    #[serde(default)]
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
    /// The input up to the last cache checkpoint.
    pub cache_prefix: Option<CachePrefix>,
    /// Input text in order (system then messages, documents included), or only the
    /// `guardContent` blocks' when there are any: what guardrails inspect.
    pub input_texts: Vec<String>,
    pub guardrail: Option<GuardrailRequest>,
    /// The thinking budget, when extended thinking is on.
    pub thinking: Option<u32>,
    /// The request's documents, in order: what citations point into.
    pub documents: Vec<Document>,
    /// Anthropic models say what they are about to do before calling a tool of their own
    /// accord.
    pub tool_preamble: bool,
    pub serving: Serving,
}

const MESSAGE_OVERHEAD_TOKENS: u32 = 4;

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
        let anthropic = spec.provider == "anthropic";
        validate_messages(&self.messages)?;
        validate_request_metadata(self.request_metadata.as_ref())?;
        let inference = self.inference_config.unwrap_or_default();
        let max_tokens = validate_inference(&inference, spec.max_output_tokens)?;
        let serving = serving(
            self.service_tier.as_ref(),
            self.performance_config.as_ref(),
            model,
        )?;
        let fields = reasoning::model_fields(self.additional_model_request_fields.as_ref(), spec)?;

        let mut tally = TokenTally::new(&model.base_id);
        let (tools, tool_choice) = match self.tool_config {
            Some(config) => tools::tools(config, spec, &mut tally)?,
            None => (Vec::new(), ToolChoice::None),
        };

        let mut input_texts = Vec::new();
        let mut guard_texts = Vec::new();
        for (k, block) in self.system.iter().enumerate() {
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
                SystemBlock::GuardContent(v) => {
                    tally.add_text(&v.to_string());
                    guard_texts.push(guard_content_text(v));
                }
                SystemBlock::CachePoint(v) => {
                    tally.cache_point(v, &format!("system.{k}.member.cachePoint"), spec)?
                }
            }
        }

        let mut media = MediaCheck::new(spec);
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
                let at = At::block(i, j);
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
                        for (k, part) in r.content.iter().enumerate() {
                            let part_at = at.tool_result_part(k);
                            if let Some(image) = part.get("image") {
                                media.image(image, &part_at, message.role)?;
                                tally.add_fixed(IMAGE_TOKENS, image.to_string().as_bytes());
                            } else if let Some(document) = part.get("document") {
                                add_document(
                                    &mut media,
                                    &mut tally,
                                    &mut input_texts,
                                    document,
                                    &part_at,
                                    message.role,
                                )?;
                            } else {
                                tally.add_text(&part.to_string());
                            }
                        }
                    }
                    ContentBlock::Image(v) => {
                        media.image(v, &at, message.role)?;
                        tally.add_fixed(IMAGE_TOKENS, v.to_string().as_bytes());
                    }
                    ContentBlock::Document(v) => add_document(
                        &mut media,
                        &mut tally,
                        &mut input_texts,
                        v,
                        &at,
                        message.role,
                    )?,
                    ContentBlock::Video(v) | ContentBlock::Audio(v) => {
                        tally.add_fixed(IMAGE_TOKENS, v.to_string().as_bytes());
                    }
                    ContentBlock::ReasoningContent(v) => {
                        let text = reasoning::history_block(v, &at, anthropic)?;
                        tally.add_text(&text);
                    }
                    ContentBlock::GuardContent(v) => {
                        tally.add_text(&v.to_string());
                        guard_texts.push(guard_content_text(v));
                    }
                    ContentBlock::CitationsContent(v) | ContentBlock::SearchResult(v) => {
                        tally.add_text(&v.to_string())
                    }
                    ContentBlock::CachePoint(v) => {
                        tally.cache_point(v, &format!("{}.cachePoint", at.coral), spec)?
                    }
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
        if let Some(budget) = fields.thinking {
            let forced = matches!(tool_choice, ToolChoice::Any | ToolChoice::Tool(_));
            reasoning::check_thinking(budget, max_tokens, &inference, forced, fields.top_k)?;
            reasoning::check_final_assistant(&self.messages)?;
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
        let guardrail = self
            .guardrail_config
            .map(GuardrailConfig::checked)
            .transpose()?;

        let cache_prefix = tally
            .cache_prefix
            .filter(|p| p.tokens >= spec.cache_min_tokens);
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
            // Bedrock's rule: with guardContent blocks, the guardrail evaluates only them.
            input_texts: if guard_texts.is_empty() {
                input_texts
            } else {
                guard_texts
            },
            guardrail,
            thinking: fields.thinking,
            documents: media.documents,
            tool_preamble: anthropic,
            serving,
        })
    }
}

/// The text of a `guardContent` block (`{text: {text, qualifiers?}}`; images have none).
fn guard_content_text(block: &Value) -> String {
    block
        .get("text")
        .and_then(|t| t.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A document block: checked, counted (by its text, or by size when binary) and, where it
/// is text, shown to guardrails like the rest of the input.
fn add_document(
    media: &mut MediaCheck<'_>,
    tally: &mut TokenTally,
    input_texts: &mut Vec<String>,
    block: &Value,
    at: &At,
    role: Role,
) -> Result<(), BedrockError> {
    let (document, context) = media.document(block, at, role)?;
    tally.add_text(&document.name);
    if let Some(context) = &context {
        tally.add_text(context);
    }
    match document.readable_text() {
        Some(text) => {
            tally.add_text(&text);
            input_texts.push(text);
        }
        None => tally.add_fixed(document.binary_tokens(), block.to_string().as_bytes()),
    }
    Ok(())
}
