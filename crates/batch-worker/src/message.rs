//! The batch message, schema version 1 (see `infra/batch-message.schema.json`):
//! `{"schema_version": 1, "job_id", "item_id", "tenant", "prompt"?, "version"? | "label"?,
//! "variables"?, "messages"?, "tier"? | "model"?, "max_tokens"?, "temperature"?, "top_p"?,
//! "stop"?, "tags"?, "output_schema"?, "service_tier"?, "mode"?, "deadline"?}`; `messages`
//! or `prompt` is required.
//!
//! A job header message opens a job before its items: `{"schema_version": 1, "job_id",
//! "tenant", "job": {"items"?, "mode"?, "deadline"?}}`. It announces the item count and
//! decides the job's mode (`online`, `bulk` or `auto`), once: send it before the items.

use std::collections::BTreeMap;

use quarry_core::bulk::JobMode;
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
    /// `online` runs this item online whatever its job's mode; `bulk` makes a job that was
    /// never opened a bulk job (of unannounced size: submitted after a quiet time); `auto`
    /// follows the job's header, waiting for it (redelivered) if it has not arrived yet;
    /// absent: the job's header if there is one, else online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<JobMode>,
    /// When the job should be done (RFC 3339), for a bulk job this item opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// A job header message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    pub schema_version: u32,
    pub job_id: String,
    pub tenant: String,
    pub job: JobSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// How many items the job has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<JobMode>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// What a message on the batch queue is.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Item(Box<BatchMessage>),
    Job(JobMessage),
}

/// Unix milliseconds of an RFC 3339 deadline.
pub fn deadline_ms(deadline: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(deadline)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("deadline '{deadline}' is not an RFC 3339 time ({e})"))
}

/// Whether a body is a job header message (it has `job` and no `item_id`).
pub fn is_job_header(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("job").is_some() && v.get("item_id").is_none())
}

/// Parses any batch queue message: a job header (it has `job` and no `item_id`) or an item.
pub fn parse_incoming(body: &str) -> Result<Incoming, Invalid> {
    let header = serde_json::from_str::<Value>(body)
        .ok()
        .filter(|v| v.get("job").is_some() && v.get("item_id").is_none());
    let Some(value) = header else {
        return parse(body).map(|m| Incoming::Item(Box::new(m)));
    };
    let invalid = |reason: String| Invalid { reason, ids: None };
    if value.get("schema_version").and_then(Value::as_u64) != Some(u64::from(SCHEMA_VERSION)) {
        return Err(invalid(format!(
            "schema_version is missing or not {SCHEMA_VERSION}"
        )));
    }
    let job: JobMessage =
        serde_json::from_value(value).map_err(|e| invalid(format!("invalid job header: {e}")))?;
    if !id_ok(&job.job_id) || !id_ok(&job.tenant) {
        return Err(invalid(
            "job_id and tenant must be 1-128 letters, digits, '-', '_', '.' or ':'".into(),
        ));
    }
    if job.job.items == Some(0) {
        return Err(invalid("a job has at least 1 item".into()));
    }
    if let Some(d) = &job.job.deadline {
        deadline_ms(d).map_err(invalid)?;
    }
    Ok(Incoming::Job(job))
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
    if let Some(d) = &message.deadline
        && let Err(e) = deadline_ms(d)
    {
        return invalid(&e);
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
    fn job_headers_and_item_modes_parse() {
        let Incoming::Job(job) = parse_incoming(
            r#"{"schema_version":1,"job_id":"j1","tenant":"acme","job":{"items":120,"mode":"bulk"}}"#,
        )
        .unwrap() else {
            panic!("not a job header");
        };
        assert_eq!(
            (job.job.items, job.job.mode),
            (Some(120), Some(JobMode::Bulk))
        );
        let Incoming::Item(item) = parse_incoming(
            r#"{"schema_version":1,"job_id":"j1","item_id":"i","tenant":"acme","prompt":"p","mode":"online"}"#,
        )
        .unwrap() else {
            panic!("not an item");
        };
        assert_eq!(item.mode, Some(JobMode::Online));
        let e = parse(r#"{"schema_version":1,"job_id":"j1","item_id":"i","tenant":"acme","prompt":"p","deadline":"tomorrow"}"#).unwrap_err();
        assert!(e.reason.contains("RFC 3339"), "{}", e.reason);
        let e = parse_incoming(
            r#"{"schema_version":1,"job_id":"j1","tenant":"acme","job":{"deadline":"soon"}}"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("RFC 3339"), "{}", e.reason);
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
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","mode":"bulk","deadline":"2026-12-02T00:00:00Z"}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","mode":"later"}"#,
            r#"{"schema_version":1,"job_id":"j","tenant":"acme","job":{"items":120,"mode":"auto","deadline":"2026-12-02T00:00:00+01:00"}}"#,
            r#"{"schema_version":1,"job_id":"j","tenant":"acme","job":{}}"#,
            r#"{"schema_version":1,"job_id":"j","tenant":"acme","job":{"items":0}}"#,
            r#"{"schema_version":1,"job_id":"j","tenant":"acme","job":{"mode":"fast"}}"#,
            r#"{"schema_version":1,"job_id":"j","tenant":"acme","job":{"items":5,"extra":1}}"#,
            r#"{"schema_version":2,"job_id":"j","tenant":"acme","job":{"items":5}}"#,
            r#"{"schema_version":1,"tenant":"acme","job":{"items":5}}"#,
            r#"{"schema_version":1,"job_id":"j","item_id":"i","tenant":"acme","prompt":"p","job":{"items":5}}"#,
        ];
        for case in cases {
            let value: serde_json::Value = serde_json::from_str(case).unwrap();
            assert_eq!(
                validator.is_valid(&value),
                parse_incoming(case).is_ok(),
                "{case}"
            );
        }
    }
}
