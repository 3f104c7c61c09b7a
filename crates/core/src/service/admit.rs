//! Everything before the model: prepare (prompt, render, route, policy), input guardrails,
//! admission (budget and rate limits, which may degrade the route), and the cache key.

use sha2::Digest;

use super::{CacheMode, ChatService, PromptTrace, guard};
use crate::admission::Admission;
use crate::audit::AuditLevel;
use crate::cache::CacheKey;
use crate::chat::{ChatInput, Prepared};
use crate::error::Error;
use crate::guardrails::{Findings, GuardrailConfig, Masks};
use crate::model::{GuardrailRef, ModelRequest};
use crate::routing::RouteSpec;
use crate::telemetry::{self, Dims};
use crate::tenancy::Caller;
use crate::trace::Stage::Input;

/// How the request will be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Whole,
    Stream,
    /// A cache lookup: decide routing as admission would, but count nothing and refuse
    /// nothing.
    Peek,
}

/// A request after everything that happens before the model.
pub(crate) struct Admitted {
    pub(crate) prepared: Prepared,
    /// The tenant's and the prompt's guardrails, the stricter of each.
    pub(crate) guard: GuardrailConfig,
    /// What the input guardrails found (redactions, flags).
    pub(crate) findings: Findings,
    /// The placeholders `mask` put in the input, to restore in the answer (in memory only).
    pub(crate) masks: Masks,
    /// The audit level (tenant's and prompt's) and, when audited, the input's SHA-256
    /// before the guardrails.
    pub(crate) audit: AuditLevel,
    pub(crate) input_sha256: String,
    /// Set when the answer may come from, and go to, the cache.
    pub(crate) key: Option<CacheKey>,
    pub(crate) degraded_to: Option<String>,
    pub(crate) trace: PromptTrace,
    /// What retrieval gave the model, for a prompt that retrieves.
    pub(crate) retrieval: Option<crate::retrieval::RetrievalOutcome>,
    /// The retrieval's ledger line, being written: awaited before the request answers.
    pub(crate) pending: super::retrieve::Pending,
}

fn trace(request: &ModelRequest, keep: bool) -> PromptTrace {
    let bytes = serde_json::to_vec(&(&request.system, &request.messages)).unwrap_or_default();
    PromptTrace {
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        text: keep.then(|| String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Applies the output caps, the tenant's and the tier's: a larger `max_tokens` is lowered
/// to the cap, a request without one gets it. Applied after a degrade, to the route that
/// will run. (A model's own limit is Bedrock's to enforce: its ValidationException names it.)
fn cap_max_tokens(prepared: &mut Prepared, caller: &Caller) {
    let tier_cap = prepared
        .route
        .tier
        .as_ref()
        .and_then(|t| prepared.routing.tier_max_tokens.get(t))
        .copied();
    let max_tokens = &mut prepared.request.params.max_tokens;
    if let Some(cap) = [caller.policy.max_tokens, tier_cap]
        .into_iter()
        .flatten()
        .min()
    {
        *max_tokens = Some(max_tokens.map_or(cap, |m| m.min(cap)));
    }
}

impl ChatService {
    pub(crate) async fn admit(
        &self,
        caller: &Caller,
        input: ChatInput,
        cache: CacheMode,
        mode: Mode,
        request_id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Admitted, Error> {
        let mut prepared = self.preparer.prepare(caller, input).await?;
        let tenant = caller.policy.guardrails.clone().unwrap_or_default();
        let guard = match &prepared.guardrails {
            Some(p) => tenant.combine(p),
            None => tenant,
        };
        let feature = prepared.feature().unwrap_or("-").to_owned();
        let dims = Dims {
            tenant: &caller.tenant,
            model: "-",
            feature: &feature,
        };
        let audit = AuditLevel::of(caller.policy.audit, prepared.audit);
        let input_sha256 = super::audit::input_hash(audit, &prepared.request);
        let mut masks = Masks::default();
        let findings = match crate::trace::guarded(Input, || {
            guard::input(&guard, &mut prepared, &mut masks)
        }) {
            Ok(f) => f,
            Err(e) => {
                telemetry::count("GuardrailActions", 1, dims);
                return Err(e);
            }
        };
        telemetry::count("GuardrailActions", u64::from(findings.actions()), dims);
        // Converse and ConverseStream apply the Bedrock guardrail themselves (streams in sync
        // mode: each chunk is checked before Bedrock sends it). A streamed request's input is
        // also checked here, before the first byte: a block is a 400, never a stream that
        // opens with Bedrock's blocked message. A failed check refuses (fails closed).
        if let Some(b) = &guard.bedrock {
            if mode == Mode::Stream {
                let input: Vec<String> = prepared
                    .request
                    .messages
                    .iter()
                    .map(|m| m.text())
                    .filter(|t| !t.is_empty())
                    .collect();
                match crate::trace::bedrock_guarded(
                    Input,
                    self.shared.applier.input_intervenes(b, &input.join("\n")),
                )
                .await
                {
                    Ok(false) => {}
                    Ok(true) => {
                        telemetry::count("GuardrailActions", 1, dims);
                        return Err(Error::GuardrailBlocked(
                            "the Bedrock guardrail intervened on the request".into(),
                        ));
                    }
                    Err(e) => {
                        telemetry::count("GuardrailCheckErrors", 1, dims);
                        tracing::error!(error = %e, guardrail = %b.id, "Bedrock guardrail input check failed; the request is refused");
                        return Err(Error::Dependency(e));
                    }
                }
            }
            prepared.request.guardrail = Some(GuardrailRef {
                id: b.id.clone(),
                version: b.version.clone(),
            });
        }
        let shared = &self.shared;
        let admission = match mode {
            Mode::Peek => {
                shared
                    .admission
                    .peek(caller, prepared.feature(), &prepared.route)
                    .await
            }
            Mode::Whole | Mode::Stream => {
                shared
                    .admission
                    .admit(caller, prepared.feature(), &prepared.route)
                    .await?
            }
        };
        let degraded_to = match admission {
            Admission::Proceed => None,
            Admission::Degrade { tier, reason } => {
                // The same routing snapshot the request was prepared with.
                prepared.route = prepared
                    .routing
                    .route(Some(&RouteSpec::Tier(tier.clone())))?;
                let home = prepared.routing.home_region.as_deref();
                caller
                    .policy
                    .apply(&mut prepared.route, home, &caller.tenant)?;
                crate::needs::fit(&mut prepared.route, &prepared.request)?;
                tracing::info!(tenant = %caller.tenant, %tier, %reason, "budget: request degraded");
                Some(tier)
            }
        };
        cap_max_tokens(&mut prepared, caller);
        let (mut retrieval, pending) = shared
            .retrieve(caller, &mut prepared, mode, request_id, deadline)
            .await?;
        // Sources go back to the caller: masked as the answer is, whatever the action (a
        // passage is the Knowledge Base's text, not the caller's to be refused for).
        if guard.is_active()
            && let Some(r) = retrieval.as_mut()
        {
            for source in &mut r.sources {
                source.excerpt = crate::guardrails::check(&guard, &source.excerpt, false).0;
            }
        }
        let safe = prepared.request.params.temperature == Some(0.0) || prepared.prompt_cacheable;
        let key = (cache != CacheMode::Bypass && safe)
            .then(|| CacheKey::new(&caller.tenant, &prepared, &guard));
        let trace = trace(&prepared.request, shared.log_content);
        Ok(Admitted {
            prepared,
            guard,
            findings,
            masks,
            audit,
            input_sha256,
            key,
            degraded_to,
            trace,
            retrieval,
            pending,
        })
    }
}
