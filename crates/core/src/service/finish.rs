//! The steps after the model, the same for whole and streamed answers: what Bedrock's
//! guardrail did (Converse and ConverseStream apply it; its trace tells a mask from a block),
//! output guardrails on text and JSON, then the cache write. Structured output was checked before (with a repair on whole
//! answers): what reaches here is the answer the client will get.

use serde_json::Value;

use super::admit::Admitted;
use super::{Shared, guard};
use crate::error::Error;
use crate::guardrails::Findings;
use crate::model::{ModelResponse, StopReason};
use crate::routing::ModelTarget;
use crate::telemetry::Dims;
use crate::tenancy::Caller;

pub(crate) struct Finished {
    pub(crate) response: ModelResponse,
    pub(crate) json: Option<Value>,
    /// Input and output findings together.
    pub(crate) findings: Findings,
    pub(crate) grounding: Option<crate::retrieval::GroundingResult>,
    /// For the audit record: SHA-256 of the answer before output redaction, with masked
    /// values restored (empty when the request is not audited).
    pub(crate) raw_sha256: String,
}

impl Shared {
    pub(crate) async fn finish(
        &self,
        caller: &Caller,
        admitted: &Admitted,
        target: &ModelTarget,
        mut response: ModelResponse,
        mut json: Option<Value>,
    ) -> Result<Finished, Error> {
        let dims = Dims {
            tenant: &caller.tenant,
            model: &target.base_id,
            feature: admitted.prepared.feature().unwrap_or("-"),
        };
        // Output the model could not form is no answer (it was charged before this).
        if matches!(
            response.stop_reason,
            StopReason::MalformedModelOutput | StopReason::MalformedToolUse
        ) {
            return Err(Error::InvalidOutput(format!(
                "{} produced malformed output ({}); retrying may succeed",
                target.invoke_id,
                response.stop_reason.as_str()
            )));
        }
        if let Some(r) = &admitted.retrieval
            && r.context == Some(crate::retrieval::ContextMode::Documents)
        {
            crate::retrieval::context::link(&mut response.citations, &r.sources);
        }
        let raw_sha256 = if admitted.audit == crate::audit::AuditLevel::Off {
            String::new()
        } else {
            crate::audit::sha256_hex(admitted.masks.restore(&response.text()).as_bytes())
        };
        let out = crate::trace::guarded(crate::trace::Stage::Output, || {
            guard::output(&admitted.guard, &mut response, &mut json, dims)
        })?;
        let mut findings = admitted.findings.clone();
        findings.merge(out);
        let grounding = self
            .ground(
                caller,
                &admitted.prepared,
                admitted.retrieval.as_ref(),
                &response.text(),
            )
            .await?;
        // An answer that failed its grounding check is not served again from the cache.
        if grounding.as_ref().is_none_or(|g| g.passed) {
            self.store(admitted, target, &response, &json, &grounding, dims)
                .await;
        }
        Ok(Finished {
            response,
            json,
            findings,
            grounding,
            raw_sha256,
        })
    }
}
