//! The batch message, schema version 1 (see `infra/batch-message.schema.json`):
//! `{"schema_version": 1, "job_id", "item_id", "tenant", "prompt"?, "version"? | "label"?,
//! "variables"?, "messages"?, "tier"? | "model"?, "max_tokens"?, "temperature"?, "top_p"?,
//! "stop"?, "tags"?, "output_schema"?, "service_tier"?}`; `messages` or `prompt` is
//! required.

use std::collections::BTreeMap;

use quarry_core::chat::{ChatInput, PromptRef};
use quarry_core::jobs::id_ok;
use quarry_core::model::{InferenceParams, Message, ServiceTier};
use quarry_core::prompts::PromptSelector;
use quarry_core::routing::RouteSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    pub schema_version: u32,
    pub job_id: String,
    pub item_id: String,
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<BatchChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// The Bedrock service tier the item may run on: `flex` (cheaper, may wait; a throttled
    /// or slow flex call is retried at standard), `standard` or `priority`. Absent: the
    /// prompt's, else the routing's default for the tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<BatchServiceTier>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchServiceTier {
    Flex,
    Standard,
    Priority,
}

/// OpenAI-style message: `{"role": "user" | "assistant" | "system", "content": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchChatMessage {
    pub role: BatchRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchRole {
    System,
    User,
    Assistant,
}

/// The identity of an item, as far as an invalid message still tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemIds {
    pub job_id: String,
    pub item_id: String,
    pub tenant: String,
}

/// Why a message is poison (it can never succeed, however often it is delivered), and whose
/// item it was when that can be recovered, so the failure can be recorded against it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    pub reason: String,
    pub ids: Option<ItemIds>,
}

/// Parses and checks a message body. Best effort to recover the IDs of an invalid message,
/// so its failure can still be recorded against its job and item.
pub fn parse(body: &str) -> Result<BatchMessage, Invalid> {
    let value: Value = serde_json::from_str(body).map_err(|e| Invalid {
        reason: format!("the body is not JSON: {e}"),
        ids: None,
    })?;
    let ids = || {
        let s = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        match (s("job_id"), s("item_id"), s("tenant")) {
            (Some(job_id), Some(item_id), Some(tenant))
                if id_ok(&job_id) && id_ok(&item_id) && id_ok(&tenant) =>
            {
                Some(ItemIds {
                    job_id,
                    item_id,
                    tenant,
                })
            }
            _ => None,
        }
    };
    match value.get("schema_version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(Invalid {
                reason: format!("unknown schema_version {v}; this worker reads {SCHEMA_VERSION}"),
                ids: ids(),
            });
        }
        None => {
            return Err(Invalid {
                reason: "schema_version is missing or not an integer".into(),
                ids: ids(),
            });
        }
    }
    let message: BatchMessage = serde_json::from_value(value.clone()).map_err(|e| Invalid {
        reason: format!("invalid message: {e}"),
        ids: ids(),
    })?;
    let invalid = |m: &str| {
        Err(Invalid {
            reason: m.to_owned(),
            ids: ids(),
        })
    };
    if !id_ok(&message.job_id) || !id_ok(&message.item_id) || !id_ok(&message.tenant) {
        return invalid(
            "job_id, item_id and tenant must be 1-128 letters, digits, '-', '_', '.' or ':'",
        );
    }
    if message.prompt.is_none() && message.messages.is_empty() {
        return invalid("give 'messages' or a 'prompt'");
    }
    if message.version.is_some() && message.label.is_some() {
        return invalid("give 'version' or 'label', not both");
    }
    if message.tier.is_some() && message.model.is_some() {
        return invalid("give 'tier' or 'model', not both");
    }
    // The ranges of the schema file (a number too large for f32 arrives as infinity).
    let unit = |v: Option<f32>| v.is_none_or(|v| (0.0..=1.0).contains(&v));
    if !unit(message.temperature) || !unit(message.top_p) {
        return invalid("temperature and top_p must be between 0 and 1");
    }
    if message.max_tokens == Some(0) {
        return invalid("max_tokens must be at least 1");
    }
    if message.stop.iter().any(String::is_empty) {
        return invalid("stop sequences must not be empty");
    }
    Ok(message)
}

impl BatchMessage {
    pub fn into_input(self) -> ChatInput {
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for m in self.messages {
            match m.role {
                BatchRole::System => system.push(m.content),
                BatchRole::User => messages.push(Message::user(m.content)),
                BatchRole::Assistant => messages.push(Message::assistant(m.content)),
            }
        }
        let selector = match (self.version, self.label) {
            (Some(v), _) => Some(PromptSelector::Version(v)),
            (None, Some(l)) => Some(PromptSelector::Label(l)),
            _ => None,
        };
        ChatInput {
            prompt: self.prompt.map(|name| PromptRef {
                name,
                selector,
                ab_key: None,
            }),
            variables: self.variables,
            system,
            messages,
            route: self
                .tier
                .map(RouteSpec::Tier)
                .or(self.model.map(RouteSpec::Model)),
            params: InferenceParams {
                max_tokens: self.max_tokens,
                temperature: self.temperature,
                top_p: self.top_p,
                stop: self.stop,
                top_k: None,
            },
            tools: Vec::new(),
            tool_choice: None,
            output_schema: self.output_schema,
            tags: self.tags,
            reasoning: None,
            // Absent: the prompt's or the routing's (a batch tier may default to flex).
            service_tier: self.service_tier.map(|t| match t {
                BatchServiceTier::Flex => ServiceTier::Flex,
                BatchServiceTier::Standard => ServiceTier::Default,
                BatchServiceTier::Priority => ServiceTier::Priority,
            }),
            latency_optimized: false,
            single_tool_call: false,
            anthropic_beta: Vec::new(),
            system_cache_point: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_message_parses() {
        let m = parse(r#"{"schema_version":1,"job_id":"j1","item_id":"i1","tenant":"acme","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(m.item_id, "i1");
        assert_eq!(m.into_input().messages.len(), 1);
    }

    #[test]
    fn poison_keeps_its_ids_when_it_can() {
        let e = parse(r#"{"schema_version":9,"job_id":"j1","item_id":"i1","tenant":"acme"}"#)
            .unwrap_err();
        assert!(e.reason.contains("schema_version 9"));
        let ids = e.ids.unwrap();
        assert_eq!(
            (
                ids.job_id.as_str(),
                ids.item_id.as_str(),
                ids.tenant.as_str()
            ),
            ("j1", "i1", "acme")
        );
        let e = parse("not json").unwrap_err();
        assert!(e.reason.contains("not JSON"));
        assert_eq!(e.ids, None);
        let e = parse(r#"{"schema_version":1,"job_id":"j1","item_id":"i1","tenant":"acme"}"#)
            .unwrap_err();
        assert!(e.reason.contains("messages"));
        let e = parse(r#"{"schema_version":1,"job_id":"j1","item_id":"i1","tenant":"acme","prompt":"p","bogus":1}"#).unwrap_err();
        assert!(e.reason.contains("bogus"));
    }
}

#[cfg(test)]
mod schema_file {
    use super::*;

    fn schema() -> jsonschema::Validator {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/batch-message.schema.json"
        ))
        .unwrap();
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    /// The published JSON Schema and the worker's parser agree on what is a valid message.
    #[test]
    fn the_schema_file_and_the_parser_agree() {
        let validator = schema();
        let cases = [
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"summarize","variables":{"text":"x"},"label":"prod","tier":"batch"}"#,
            r#"{"schema_version":2,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p"}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme"}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","version":1,"label":"x"}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","tier":"a","model":"b"}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","extra":1}"#,
            r#"{"schema_version":1,"job_id":"has space","item_id":"i","tenant":"acme","prompt":"p"}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","temperature":5.3}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","top_p":1e94}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","temperature":-0.5}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","max_tokens":0}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","stop":[""]}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","temperature":1,"top_p":0,"max_tokens":1,"stop":["x"]}"#,
        ];
        for case in cases {
            let value: serde_json::Value = serde_json::from_str(case).unwrap();
            assert_eq!(validator.is_valid(&value), parse(case).is_ok(), "{case}");
        }
    }
}
