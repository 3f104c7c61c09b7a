//! Bulk items: the answer pipeline split where Bedrock batch inference sits in it.
//!
//! Before submission, an item is admitted as any request is (prompt version, variables,
//! input guardrails, routing) and shaped by its output plan, for the first model of its
//! route that batch inference serves. Budgets are not admitted per item: a bulk job holds
//! its whole estimate against the budget before it is submitted.
//!
//! When Bedrock has answered, the answer is charged at the batch price, its structured
//! output checked (no repair: a record cannot be asked again), and the output guardrails
//! run, as on every other answer.
//!
//! Some items cannot run in bulk and are said to run online instead: a prompt that
//! retrieves (retrieval happens at answer time), a Bedrock guardrail (batch inference does
//! not apply one), or a route with no batch model.

use std::time::Duration;

use tokio::time::Instant;

use super::admit::{Admitted, Mode};
use super::charge::{self, Charges};
use super::output::{self, OutputPlan};
use super::{Answer, CacheMode, ChatService};
use crate::chat::{ChatInput, PromptUsed};
use crate::error::Error;
use crate::model::{ModelRequest, ModelResponse};
use crate::pricing::MicroUsd;
use crate::routing::ModelTarget;
use crate::tenancy::Caller;

/// Output tokens asked for when neither the request nor the model card gives a number.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// An item ready for batch inference.
pub struct BulkItem {
    /// The request as the batch record carries it (structured output shaped in).
    pub request: ModelRequest,
    /// The model it runs on.
    pub target: ModelTarget,
    pub prompt: Option<PromptUsed>,
    /// Input tokens, estimated, and the most output it may produce: the cost estimate.
    pub input_tokens: u64,
    pub max_output_tokens: u64,
    admitted: Admitted,
    plan: Option<OutputPlan>,
}

/// Where an item runs.
pub enum BulkFit {
    Bulk(Box<BulkItem>),
    /// Online instead, and why.
    Online(String),
}

impl ChatService {
    /// Prepares an item for batch inference. `Err` is the item's own failure (a bad
    /// variable, a blocked input), as it would be online.
    pub async fn prepare_bulk(
        &self,
        caller: &Caller,
        input: ChatInput,
        request_id: &str,
    ) -> Result<BulkFit, Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let admitted = self
            .admit(
                caller,
                input,
                CacheMode::Bypass,
                Mode::Peek,
                request_id,
                deadline,
            )
            .await?;
        if admitted.prepared.retrieval.is_some() {
            return Ok(BulkFit::Online(
                "its prompt retrieves from a Knowledge Base, which happens at answer time".into(),
            ));
        }
        if admitted.guard.bedrock.is_some() {
            return Ok(BulkFit::Online(
                "a Bedrock guardrail applies to it, which batch inference does not run".into(),
            ));
        }
        let Some(target) = admitted
            .prepared
            .route
            .chain
            .iter()
            .find(|t| t.capabilities.batch_inference)
            .cloned()
        else {
            return Ok(BulkFit::Online(
                "no model of its route serves batch inference".into(),
            ));
        };
        let plan = self.shared.plan(&admitted.prepared)?;
        let mut request = output::shaped(&admitted.prepared.request, plan.as_ref());
        // A batch record is a model's own body, which must say how long the answer may be.
        let card = target.capabilities.max_output_tokens;
        let fallback = if card > 0 {
            card.min(DEFAULT_MAX_TOKENS)
        } else {
            DEFAULT_MAX_TOKENS
        };
        let max_tokens = *request.params.max_tokens.get_or_insert(fallback);
        request.guardrail = None;
        Ok(BulkFit::Bulk(Box::new(BulkItem {
            input_tokens: u64::from(charge::request_tokens(&request)),
            max_output_tokens: u64::from(max_tokens),
            prompt: admitted.prepared.prompt.clone(),
            request,
            target,
            admitted,
            plan,
        })))
    }

    /// Completes an item from Bedrock's answer: charged (under `request_id`, once however
    /// often this runs) at the batch price, then checked as every answer is. The cost comes
    /// back with the outcome: a failed check was billed all the same.
    pub async fn finish_bulk(
        &self,
        caller: &Caller,
        item: BulkItem,
        request_id: &str,
        mut response: ModelResponse,
    ) -> (Result<Answer, Error>, Option<MicroUsd>) {
        let BulkItem {
            target,
            admitted,
            plan,
            ..
        } = item;
        let mut charges = Charges::default();
        charges.push_bulk(&target, response.usage);
        let cost = self
            .shared
            .charge(caller, (&admitted.prepared).into(), request_id, &charges)
            .await;
        let json = match &plan {
            None => None,
            Some(plan) => match plan.check(&response) {
                Ok(value) => {
                    response = plan.answer(response, &value);
                    Some(value)
                }
                Err(problem) => {
                    let e = Error::InvalidOutput(format!(
                        "the answer does not match the output schema: {problem}"
                    ));
                    return (Err(e), cost);
                }
            },
        };
        let mut finished = match self
            .shared
            .finish(caller, &admitted, &target, response, json)
            .await
        {
            Ok(f) => f,
            Err(e) => return (Err(e), cost),
        };
        self.shared
            .audit(
                caller,
                &admitted,
                super::audit::Answered {
                    request_id,
                    model: &target.invoke_id,
                    base_model: &target.base_id,
                    region: target.region.as_deref(),
                    usage: charges.usage(),
                    cost,
                    cached: false,
                    fallbacks: &[],
                    findings: &finished.findings,
                    grounding: finished.grounding.as_ref(),
                    answer: &finished.response,
                    output_sha256: &finished.raw_sha256,
                },
            )
            .await;
        // The item was masked as it was submitted (the same values give the same
        // placeholders): its values go back in.
        super::guard::restore(&admitted.masks, &mut finished.response, &mut finished.json);
        let answer = Answer {
            citations: finished.response.citations,
            served: finished.response.served,
            content: finished.response.content,
            json: finished.json,
            stop_reason: finished.response.stop_reason,
            usage: charges.usage(),
            model: target.invoke_id.clone(),
            base_model: target.base_id.clone(),
            fallbacks: Vec::new(),
            cost,
            cached: false,
            prompt: admitted.prepared.prompt.clone(),
            model_latency_ms: finished.response.latency_ms,
            guardrails: finished.findings,
            degraded_to: None,
            model_calls: 1,
            prompt_trace: admitted.trace,
            retrieval: None,
            grounding: finished.grounding,
        };
        (Ok(answer), cost)
    }

    /// Charges a record Bedrock answered whose item can no longer be prepared (its prompt
    /// or the tenant's policy changed since submission): Bedrock billed it all the same.
    pub async fn charge_bulk(
        &self,
        caller: &Caller,
        target: &ModelTarget,
        request_id: &str,
        usage: crate::model::TokenUsage,
    ) -> Option<MicroUsd> {
        let mut charges = Charges::default();
        charges.push_bulk(target, usage);
        self.shared
            .charge(caller, Default::default(), request_id, &charges)
            .await
    }
}
