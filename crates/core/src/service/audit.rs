//! An answer's audit record, written at the end of the request (whole, streamed or from the
//! cache), from the answer as the guardrails left it: under `mask` it is written before the
//! values are restored, so a record holds placeholders, never a value.

use super::Shared;
use super::admit::Admitted;
use crate::audit::{AuditLevel, AuditRecord, PromptRef, SourceRef, sha256_hex};
use crate::guardrails::Findings;
use crate::invoke::Fallback;
use crate::model::TokenUsage;
use crate::pricing::MicroUsd;
use crate::telemetry::{self, Dims};
use crate::tenancy::Caller;

/// What the answer was, for its record.
pub(crate) struct Answered<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) model: &'a str,
    pub(crate) base_model: &'a str,
    pub(crate) region: Option<&'a str>,
    pub(crate) usage: TokenUsage,
    pub(crate) cost: Option<MicroUsd>,
    pub(crate) cached: bool,
    pub(crate) fallbacks: &'a [Fallback],
    pub(crate) findings: &'a Findings,
    pub(crate) grounding: Option<&'a crate::retrieval::GroundingResult>,
    /// The answer after the output guardrails (placeholders kept): its text is taken only
    /// for a `full` record.
    pub(crate) answer: &'a crate::model::ModelResponse,
    /// SHA-256 of the answer before output redaction, values restored.
    pub(crate) output_sha256: &'a str,
}

/// The input's SHA-256 before the guardrails ran (what an auditor holding the caller's
/// text can check), computed only when the request is audited.
pub(crate) fn input_hash(level: AuditLevel, request: &crate::model::ModelRequest) -> String {
    if level == AuditLevel::Off {
        return String::new();
    }
    let bytes = serde_json::to_vec(&(&request.system, &request.messages)).unwrap_or_default();
    sha256_hex(&bytes)
}

impl Shared {
    /// Writes the record when the request is audited. A record that can be neither
    /// delivered nor spilled is counted (`AuditRecordsLost`) and logged by request ID.
    pub(crate) async fn audit(&self, caller: &Caller, admitted: &Admitted, a: Answered<'_>) {
        let level = admitted.audit;
        if level == AuditLevel::Off {
            return;
        }
        let prepared = &admitted.prepared;
        let full = level == AuditLevel::Full;
        let record = AuditRecord {
            schema_version: AuditRecord::SCHEMA_VERSION,
            request_id: a.request_id.to_owned(),
            tenant: caller.tenant.clone(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level,
            key: caller.key_label.clone(),
            prompt: prepared.prompt.as_ref().map(|p| PromptRef {
                name: p.name.clone(),
                version: p.version,
            }),
            model: a.model.to_owned(),
            base_model: a.base_model.to_owned(),
            region: a.region.map(str::to_owned),
            params: serde_json::to_string(&prepared.request.params).unwrap_or_default(),
            usage: a.usage,
            cost_usd: a.cost.map(MicroUsd::to_usd_string),
            cached: a.cached,
            fallbacks: a
                .fallbacks
                .iter()
                .map(|f| format!("{}: {}", f.model, f.reason))
                .collect(),
            guardrails: serde_json::to_string(a.findings).unwrap_or_default(),
            grounding: a.grounding.and_then(|g| serde_json::to_string(g).ok()),
            sources: admitted
                .retrieval
                .iter()
                .flat_map(|r| &r.sources)
                .map(|s| SourceRef {
                    uri: s.uri.clone(),
                    score: s.score,
                })
                .collect(),
            input_sha256: admitted.input_sha256.clone(),
            output_sha256: a.output_sha256.to_owned(),
            input: full.then(|| {
                serde_json::to_string(&(&prepared.request.system, &prepared.request.messages))
                    .unwrap_or_default()
            }),
            output: full.then(|| a.answer.text()),
            truncated: false,
            variables: (full && !prepared.variables.is_empty()).then(|| {
                // Checked as the input was, with the same placeholders.
                let mut masks = admitted.masks.clone();
                let mut value = serde_json::Value::Object(prepared.variables.clone());
                super::guard::input_json(&admitted.guard, &mut value, &mut masks);
                value.to_string()
            }),
        };
        if let Err(e) = self.audit.record(&record).await {
            let dims = Dims {
                tenant: &caller.tenant,
                model: a.base_model,
                feature: prepared.feature().unwrap_or("-"),
            };
            telemetry::count("AuditRecordsLost", 1, dims);
            tracing::error!(request_id = %a.request_id, tenant = %caller.tenant, input_sha256 = %record.input_sha256, output_sha256 = %record.output_sha256, error = %e, "audit record lost: neither delivered nor spilled");
        }
    }
}

impl Shared {
    /// The record of an answer served from the cache (as stored: placeholders kept).
    pub(crate) async fn audit_hit(
        &self,
        caller: &Caller,
        admitted: &Admitted,
        hit: &super::caching::Hit,
        request_id: &str,
    ) {
        if admitted.audit == AuditLevel::Off {
            return;
        }
        let restored = admitted.masks.restore(&hit.answer.response.text());
        let output_sha256 = sha256_hex(restored.as_bytes());
        self.audit(
            caller,
            admitted,
            Answered {
                request_id,
                model: &hit.answer.model,
                base_model: &hit.base_model,
                region: None,
                usage: TokenUsage::default(),
                cost: Some(MicroUsd::ZERO),
                cached: true,
                fallbacks: &[],
                findings: &admitted.findings,
                grounding: hit.answer.grounding.as_ref(),
                answer: &hit.answer.response,
                output_sha256: &output_sha256,
            },
        )
        .await;
    }
}
