//! The audit trail: one record per answer, for tenants and prompts that ask for it
//! (`audit: off | metadata | full`; the higher of the tenant's and the prompt's applies).
//!
//! - `metadata`: who, when, which prompt version, model and region, the inference
//!   parameters, tokens, cost, guardrail actions, grounding scores and sources.
//! - `full`: that, plus the input as sent to the model and the answer, both after the
//!   guardrails (so redacted, and with placeholders under `mask`: a masked value never
//!   reaches a record), with the SHA-256 of the text before redaction, so an auditor holding
//!   the original can prove it is the one.
//!
//! Records go to the audit trail ([`crate::ports::AuditTrail`]: Firehose into an S3 bucket
//! under Object Lock), never to the logs, which carry hashes only. Fields that hold JSON of
//! open shape (`params`, `guardrails`, `grounding`, `input`) are JSON text, so one table
//! definition reads every record (see `infra/athena/`).

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::model::TokenUsage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditLevel {
    #[default]
    Off,
    Metadata,
    Full,
}

impl AuditLevel {
    /// The level for a request: the higher of the tenant's and the prompt's.
    pub fn of(tenant: Option<AuditLevel>, prompt: Option<AuditLevel>) -> AuditLevel {
        tenant.unwrap_or_default().max(prompt.unwrap_or_default())
    }
}

/// A prompt version, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRef {
    pub name: String,
    pub version: u64,
}

/// A retrieved source, as recorded (its text is not: the Knowledge Base holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    pub uri: Option<String>,
    pub score: Option<f64>,
}

/// One answer's audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub schema_version: u32,
    /// The ID the client was given for the request (API Gateway's).
    pub request_id: String,
    pub tenant: String,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub level: AuditLevel,
    /// The label of the caller's API key, when it has one (batch work has none).
    pub key: Option<String>,
    pub prompt: Option<PromptRef>,
    /// The model as invoked (profile, ARN or ID), and its base model.
    pub model: String,
    pub base_model: String,
    pub region: Option<String>,
    /// Inference parameters as sent (JSON text).
    pub params: String,
    pub usage: TokenUsage,
    /// Decimal USD; `None` when a model used has no price.
    pub cost_usd: Option<String>,
    pub cached: bool,
    /// Models left before the one that answered, with why.
    pub fallbacks: Vec<String>,
    /// Guardrail actions, by kind and count (JSON text).
    pub guardrails: String,
    /// The grounding check's verdict and scores (JSON text), when one ran.
    pub grounding: Option<String>,
    pub sources: Vec<SourceRef>,
    /// SHA-256 of the input as the caller sent it (rendered, before redaction).
    pub input_sha256: String,
    /// SHA-256 of the answer before output redaction, with masked values restored.
    pub output_sha256: String,
    /// `full` only: system and messages as sent to the model (JSON text, after redaction).
    pub input: Option<String>,
    /// `full` only: the prompt's variables as the caller gave them, after the guardrails
    /// (JSON text; the rendered template is the input's last user turn).
    #[serde(default)]
    pub variables: Option<String>,
    /// `full` only: the answer after output guardrails (placeholders kept).
    pub output: Option<String>,
    /// The texts were cut to fit a Firehose record or a spill message (their hashes still
    /// name the whole).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl AuditRecord {
    pub const SCHEMA_VERSION: u32 = 1;

    /// The record as Firehose receives it: one JSON line.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// The day partition (`YYYY-MM-DD`) of the record.
    pub fn date(&self) -> &str {
        self.time.get(..10).unwrap_or_default()
    }
}

/// Hex SHA-256 of a text.
pub fn sha256_hex(text: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_higher_level_applies() {
        use AuditLevel::*;
        assert_eq!(AuditLevel::of(None, None), Off);
        assert_eq!(AuditLevel::of(Some(Metadata), None), Metadata);
        assert_eq!(AuditLevel::of(Some(Metadata), Some(Full)), Full);
        assert_eq!(AuditLevel::of(Some(Full), Some(Off)), Full);
    }
}
