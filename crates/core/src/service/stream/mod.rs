//! Streamed answers: the [`Accumulator`] (a pure fold of the model's events) and a thin
//! driver that forwards redacted deltas to the client, charges what was used once, and then
//! runs the same output steps as a whole answer on the accumulated response.
//!
//! If the client goes away, the model stream is dropped and the tokens so far are charged
//! (estimated, and marked so, when Bedrock never reported them).

mod accumulator;
mod gate;

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::mpsc;

pub use self::accumulator::Accumulator;
use self::gate::{Gate, Held};
use super::admit::Admitted;
use super::charge::Charges;
use super::{OutputPlan, PromptTrace, Shared};
use crate::chat::PromptUsed;
use crate::error::Error;
use crate::guardrails::{Findings, Restorer};
use crate::invoke::{Fallback, StreamInvocation};
use crate::model::{ContentBlock, StopReason, TokenUsage};
use crate::pricing::MicroUsd;
use crate::tenancy::Caller;

/// One event of a streamed answer.
#[derive(Debug)]
pub enum StreamItem {
    Text(String),
    /// A piece of the model's reasoning.
    Reasoning(String),
    /// The reasoning block so far is complete: its signature (sent back on a later turn).
    ReasoningSigned(String),
    /// A tool call begins; `index` counts tool calls from 0.
    ToolStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolDelta {
        index: u32,
        json: String,
    },
    Done(Box<StreamSummary>),
    Error(Error),
}

#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub stop_reason: StopReason,
    pub usage: TokenUsage,
    pub cost: Option<MicroUsd>,
    pub json: Option<Value>,
    pub guardrails: Findings,
    pub model_latency_ms: u64,
    /// The answer's reasoning blocks, signatures included (to be sent back next turn).
    pub reasoning: Vec<crate::model::ContentBlock>,
    pub citations: Vec<crate::model::Citation>,
    pub served: crate::model::Served,
    pub grounding: Option<crate::retrieval::GroundingResult>,
}

/// A streamed answer: what is known when the first token arrives, and the events.
pub struct AnswerStream {
    pub model: String,
    pub fallbacks: Vec<Fallback>,
    pub prompt: Option<PromptUsed>,
    pub cached: bool,
    pub degraded_to: Option<String>,
    pub guardrails: Findings,
    /// From the call to the first token.
    pub ttft_ms: u64,
    pub prompt_trace: PromptTrace,
    /// What retrieval gave the model (known before the first token).
    pub retrieval: Option<crate::retrieval::RetrievalOutcome>,
    pub events: BoxStream<'static, StreamItem>,
}

/// A stream about to be driven: who asked, what was admitted, and how to check and charge
/// its output.
pub(crate) struct Run {
    pub(crate) shared: Arc<Shared>,
    pub(crate) caller: Caller,
    pub(crate) admitted: Admitted,
    pub(crate) plan: Option<OutputPlan>,
    pub(crate) request_id: String,
    /// The shaped request's input tokens, estimated (charged if Bedrock reports none).
    pub(crate) input_tokens: u32,
    /// The retrieval's ledger line, being written: settled before the stream ends.
    pub(crate) pending: super::retrieve::Pending,
}

impl Run {
    /// Hands the stream to a task that drives it, and returns what the client sees first.
    pub(crate) fn start(self, ttft_ms: u64, invocation: StreamInvocation) -> AnswerStream {
        let (tx, rx) = mpsc::channel::<StreamItem>(64);
        let admitted = &self.admitted;
        let info = AnswerStream {
            model: invocation.target.invoke_id.clone(),
            fallbacks: invocation.fallbacks(),
            prompt: admitted.prepared.prompt.clone(),
            cached: false,
            degraded_to: admitted.degraded_to.clone(),
            guardrails: admitted.findings.clone(),
            ttft_ms,
            prompt_trace: admitted.trace.clone(),
            retrieval: admitted.retrieval.clone(),
            events: futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|i| (i, rx))
            })
            .boxed(),
        };
        crate::trace::spawn(self.drive(invocation, tx));
        info
    }
}

/// How the forwarding loop ended.
enum Ended {
    /// With what the guardrails still hold, sent once the whole answer has passed.
    Complete(Held),
    ClientGone,
    Failed(Error),
}

impl Run {
    async fn drive(mut self, invocation: StreamInvocation, tx: mpsc::Sender<StreamItem>) {
        let fallbacks = invocation.fallbacks();
        let StreamInvocation {
            target, head, rest, ..
        } = invocation;
        let mut acc = Accumulator::new(self.plan.as_ref().is_some_and(|p| p.via_tool));
        // Placeholders (`mask`) are restored after the guardrails, on what they release.
        let mut restorer = Restorer::new(self.admitted.masks.clone());
        let ended = self
            .forward(&mut acc, &mut restorer, &target.invoke_id, head, rest, &tx)
            .await;

        // Charge what was used, exactly once, whatever happens next.
        let mut charges = Charges::default();
        match acc.usage() {
            Some(usage) => charges.push_served(&target, usage, acc.served()),
            None => charges.push_estimated(
                &target,
                TokenUsage {
                    input: u64::from(self.input_tokens),
                    output: acc.output_estimate(),
                    ..TokenUsage::default()
                },
            ),
        }
        let prepared = &self.admitted.prepared;
        let cost = self
            .shared
            .charge(&self.caller, prepared.into(), &self.request_id, &charges)
            .await;
        super::retrieve::settle(self.pending.take()).await;
        let held = match ended {
            Ended::Complete(held) => held,
            Ended::ClientGone => {
                tracing::info!(tenant = %self.caller.tenant, request_id = %self.request_id, cost_usd = ?cost.map(MicroUsd::to_usd_string), "client left mid-stream; usage so far charged");
                return;
            }
            Ended::Failed(e) => {
                let _ = tx.send(StreamItem::Error(e)).await;
                return;
            }
        };

        let usage = charges.usage();
        let response = acc.into_response(usage);
        let (response, json) = match &self.plan {
            None => (response, None),
            Some(plan) => match plan.check(&response) {
                Ok(value) => (plan.answer(response, &value), Some(value)),
                Err(e) => {
                    let e = Error::InvalidOutput(format!(
                        "the streamed output does not match the requested schema: {e}"
                    ));
                    let _ = tx.send(StreamItem::Error(e)).await;
                    return;
                }
            },
        };
        let item = match self
            .shared
            .finish(&self.caller, &self.admitted, &target, response, json)
            .await
        {
            Ok(mut done) => {
                self.shared
                    .audit(
                        &self.caller,
                        &self.admitted,
                        super::audit::Answered {
                            request_id: &self.request_id,
                            model: &target.invoke_id,
                            base_model: &target.base_id,
                            region: target.region.as_deref(),
                            usage,
                            cost,
                            cached: false,
                            fallbacks: &fallbacks,
                            findings: &done.findings,
                            grounding: done.grounding.as_ref(),
                            answer: &done.response,
                            output_sha256: &done.raw_sha256,
                        },
                    )
                    .await;
                super::guard::restore(&self.admitted.masks, &mut done.response, &mut done.json);
                // Held reasoning goes out as the guardrails left it (masked where they masked),
                // each block with its signature when it kept one.
                if held.reasoning {
                    for block in &done.response.content {
                        let ContentBlock::Reasoning { text, signature } = block else {
                            continue;
                        };
                        if tx.send(StreamItem::Reasoning(text.clone())).await.is_err() {
                            return;
                        }
                        if let Some(s) = signature
                            && tx
                                .send(StreamItem::ReasoningSigned(s.clone()))
                                .await
                                .is_err()
                        {
                            return;
                        }
                    }
                }
                let text = restorer.push(held.text) + &restorer.finish();
                if !text.is_empty() && tx.send(StreamItem::Text(text)).await.is_err() {
                    return;
                }
                for (index, json) in held.tools {
                    let json = self.admitted.masks.restore_json_text(&json);
                    if tx
                        .send(StreamItem::ToolDelta { index, json })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                StreamItem::Done(Box::new(StreamSummary {
                    stop_reason: done.response.stop_reason.clone(),
                    usage,
                    cost,
                    json: done.json,
                    guardrails: done.findings,
                    model_latency_ms: done.response.latency_ms,
                    reasoning: done.response.reasoning_blocks(),
                    citations: done.response.citations.clone(),
                    served: done.response.served.clone(),
                    grounding: done.grounding,
                }))
            }
            Err(e) => StreamItem::Error(e),
        };
        let _ = tx.send(item).await;
    }

    /// Forwards the model's events to the client through the guardrails' [`Gate`].
    async fn forward(
        &self,
        acc: &mut Accumulator,
        restorer: &mut Restorer,
        invoke_id: &str,
        head: Vec<crate::model::StreamEvent>,
        rest: crate::model::ModelStream,
        tx: &mpsc::Sender<StreamItem>,
    ) -> Ended {
        // An answer a grounding check may refuse is held whole: it is released only once
        // it passed.
        let blocks = self
            .admitted
            .prepared
            .retrieval
            .as_ref()
            .and_then(|r| r.grounding.as_ref())
            .is_some_and(|g| g.action == crate::retrieval::GroundingAction::Block);
        let mut gate = Gate::new(&self.admitted.guard, blocks);
        let mut events = futures::stream::iter(head.into_iter().map(Ok)).chain(rest);
        while let Some(item) = events.next().await {
            let event = match item {
                Ok(e) => e,
                Err(e) => {
                    return Ended::Failed(Error::StreamInterrupted(format!(
                        "the model stream of {invoke_id} failed after the first token ({}): {}",
                        e.kind.as_str(),
                        e.message
                    )));
                }
            };
            let out = match acc.push(event) {
                Some(StreamItem::Text(t)) => match gate.text(t).map(|t| restorer.push(t)) {
                    Ok(t) if t.is_empty() => None,
                    Ok(t) => Some(StreamItem::Text(t)),
                    Err(e) => return Ended::Failed(e),
                },
                Some(StreamItem::Reasoning(r)) => gate.reasoning(r).map(StreamItem::Reasoning),
                Some(StreamItem::ReasoningSigned(s)) => {
                    gate.reasoning(s).map(StreamItem::ReasoningSigned)
                }
                Some(StreamItem::ToolDelta { index, json }) => gate
                    .tool(index, json)
                    .map(|(index, json)| StreamItem::ToolDelta { index, json }),
                other => other,
            };
            if let Some(item) = out
                && tx.send(item).await.is_err()
            {
                return Ended::ClientGone;
            }
        }
        match gate.end() {
            Ok(held) => Ended::Complete(held),
            Err(e) => Ended::Failed(e),
        }
    }
}
