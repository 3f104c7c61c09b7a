//! What a prompt is: its template, variables and their types, parameters, schema, cache
//! and guardrail settings, and the rules its name follows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::model::InferenceParams;
use crate::params::ParamError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    Any,
}

impl VarType {
    pub(super) fn accepts(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Number => v.is_number(),
            Self::Boolean => v.is_boolean(),
            Self::Array => v.is_array(),
            Self::Object => v.is_object(),
            Self::Any => true,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
            Self::Any => "any",
        }
    }
}

pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSpec {
    #[serde(rename = "type")]
    pub kind: VarType,
    /// Required unless it has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl VariableSpec {
    pub(super) fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// Response caching for a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// A prompt marked cacheable may be cached with `cache: auto` at any temperature.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
}

fn default_ttl() -> u64 {
    3600
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl_seconds: default_ttl(),
        }
    }
}

/// One prompt, as written in `infra/prompts/NAME.yaml` and stored in SSM as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub parameters: InferenceParams,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableSpec>,
    /// JSON Schema the output must validate against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    #[serde(default)]
    pub cache: CacheSettings,
    /// Insert a Bedrock prompt-cache checkpoint after the system prompt (models that support
    /// it, when the system prompt is long enough to be cached).
    #[serde(default)]
    pub prompt_caching: bool,
    /// Guardrail settings for this prompt (see the chat handler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<crate::guardrails::GuardrailConfig>,
    /// The service tier this prompt's calls ask for (`flex` for work that can wait); a
    /// request's own `service_tier` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<crate::model::ServiceTier>,
    /// Retrieval from a Bedrock Knowledge Base: its passages go to the model with their
    /// sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_base: Option<crate::retrieval::KnowledgeBaseSpec>,
    /// The contextual grounding check of answers against the retrieved passages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounding: Option<crate::retrieval::GroundingSpec>,
    /// Audit records for this prompt's answers (the tenant's setting may ask for more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::audit::AuditLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("prompt name '{0}' is invalid: use letters, digits, '-', '_' and '.' (at most 128)")]
    InvalidName(String),
    #[error(
        "label '{0}' is invalid: 1 to 100 letters, digits, '.', '-' and '_', not starting with a digit, 'aws' or 'ssm'"
    )]
    InvalidLabel(String),
    #[error("prompt '{0}' is invalid: {1}")]
    InvalidSpec(String, String),
    #[error("{0}")]
    Variables(String),
    #[error("template rendering failed: {0}")]
    Render(String),
}

impl From<PromptError> for Error {
    fn from(e: PromptError) -> Self {
        match e {
            PromptError::InvalidName(_) => Error::bad_request("prompt", e.to_string()),
            PromptError::InvalidLabel(_) => Error::bad_request("label", e.to_string()),
            PromptError::Variables(_) => Error::bad_request("variables", e.to_string()),
            PromptError::Render(_) => Error::bad_request("variables", e.to_string()),
            PromptError::InvalidSpec(..) => Error::Config(ParamError::Invalid {
                name: "prompt".into(),
                message: e.to_string(),
            }),
        }
    }
}

pub fn validate_name(name: &str) -> Result<(), PromptError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PromptError::InvalidName(shown(name)))
    }
}

/// An input echoed in an error, cut short.
fn shown(s: &str) -> String {
    s.chars().take(128).collect()
}

/// A label as the parameter store accepts one (checked here, so a bad label is the
/// caller's 400, not a call to the store).
pub fn validate_label(label: &str) -> Result<(), PromptError> {
    let lower = label.to_ascii_lowercase();
    let ok = (1..=100).contains(&label.len())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm");
    if ok {
        Ok(())
    } else {
        Err(PromptError::InvalidLabel(shown(label)))
    }
}
