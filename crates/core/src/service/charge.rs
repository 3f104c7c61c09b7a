//! Charging: every model call is priced (integer micro-USD) and written to the usage ledger
//! once, under an ID derived from the request's, before anything after the call can fail.
//! A cache hit is recorded too, at no cost. An unpriced model is logged and counted loudly,
//! never recorded as zero.

use super::Shared;
use crate::chat::{Prepared, estimate_tokens};
use crate::invoke::{Attempt, AttemptOutcome};
use crate::model::{
    ContentBlock, ModelErrorKind, ModelRequest, Served, ServiceTier, SystemBlock, TokenUsage,
    ToolResultContent,
};
use crate::ports::{Clock, SystemClock};
use crate::pricing::{MicroUsd, Priced};
use crate::routing::ModelTarget;
use crate::telemetry::{self, Dims};
use crate::tenancy::Caller;
use crate::usage::UsageRecord;

/// Model calls made for one request, charged once each.
#[derive(Default)]
pub(crate) struct Charges {
    calls: Vec<Call>,
}

struct Call {
    target: ModelTarget,
    usage: TokenUsage,
    /// Bedrock never reported usage (a stream cut short): tokens were estimated.
    estimated: bool,
    /// The service tier Bedrock says served the call (its price follows).
    tier: Option<ServiceTier>,
    /// Processed by Bedrock batch inference: priced at the batch price.
    bulk: bool,
}

/// Which price a call's tokens are charged at.
#[derive(Clone, Copy)]
pub(crate) enum Rate<'a> {
    /// On demand, in the service tier Bedrock reported (`None`: standard), where it was
    /// served.
    Tier(Option<ServiceTier>, crate::pricing::Placement<'a>),
    /// Bedrock batch inference.
    Batch,
    /// Provisioned Throughput: paid by the hour, nothing per token.
    Provisioned,
}

/// The base model a prompt router's trace names (`arn:...:foundation-model/ID`, or an
/// inference profile's `us.ID`): the model that answered, and the one to charge.
fn routed_base(invoked: &str) -> Option<String> {
    let id = invoked.rsplit_once('/').map_or(invoked, |(_, id)| id);
    let base = match id.split_once('.') {
        // A cross-region profile's region prefix has no '-' or ':'; a provider does not
        // either, so only strip it when what follows still has a provider and a model.
        Some((prefix, rest)) if crate::routing::is_region_prefix(prefix) && rest.contains('.') => {
            rest
        }
        _ => id,
    };
    (!base.is_empty()).then(|| base.to_owned())
}

impl Charges {
    /// A call that answered, charged as Bedrock reported it: the tier that served it, and
    /// the model a prompt router chose (not the router's ID).
    pub(crate) fn push_served(&mut self, target: &ModelTarget, usage: TokenUsage, served: &Served) {
        let mut target = target.clone();
        if let Some(base) = served.invoked_model.as_deref().and_then(routed_base) {
            target.base_id = base;
        }
        self.calls.push(Call {
            target,
            usage,
            estimated: false,
            tier: served.service_tier,
            bulk: false,
        });
    }

    /// A record Bedrock batch inference answered, charged at the batch price.
    pub(crate) fn push_bulk(&mut self, target: &ModelTarget, usage: TokenUsage) {
        self.calls.push(Call {
            target: target.clone(),
            usage,
            estimated: false,
            tier: None,
            bulk: true,
        });
    }

    pub(crate) fn push_estimated(&mut self, target: &ModelTarget, usage: TokenUsage) {
        self.calls.push(Call {
            target: target.clone(),
            usage,
            estimated: true,
            tier: None,
            bulk: false,
        });
    }

    /// Attempts that failed after the request may have reached the model (our own time
    /// limit, a network failure, an error inside a stream, Bedrock's model timeout): Bedrock
    /// may bill them, so they are charged, estimated and marked so: the request's input
    /// tokens, and its output cap (what the model may have generated before it was cut off).
    pub(crate) fn push_maybe_billed(
        &mut self,
        chain: &[ModelTarget],
        attempts: &[Attempt],
        request: &ModelRequest,
    ) {
        for attempt in attempts {
            let AttemptOutcome::Failed { error, .. } = &attempt.outcome else {
                continue;
            };
            if !error.may_be_billed() {
                continue;
            }
            let Some(target) = chain
                .iter()
                .find(|t| t.invoke_id == attempt.model && t.region == attempt.region)
            else {
                continue;
            };
            self.push_estimated(
                target,
                TokenUsage {
                    input: u64::from(request_tokens(request)),
                    output: u64::from(request.params.max_tokens.unwrap_or(0)),
                    ..TokenUsage::default()
                },
            );
        }
    }

    pub(crate) fn usage(&self) -> TokenUsage {
        self.calls
            .iter()
            .fold(TokenUsage::default(), |a, c| a + c.usage)
    }

    pub(crate) fn count(&self) -> u32 {
        u32::try_from(self.calls.len()).unwrap_or(u32::MAX)
    }
}

/// Input tokens of a request, estimated (about four characters a token), tool definitions
/// included.
pub(crate) fn request_tokens(request: &ModelRequest) -> u32 {
    let system: u32 = request
        .system
        .iter()
        .map(|b| match b {
            SystemBlock::Text(t) => estimate_tokens(t),
            SystemBlock::CachePoint => 0,
        })
        .sum();
    let messages: u32 = request
        .messages
        .iter()
        .map(|m| m.content.iter().map(block_tokens).sum::<u32>() + 4)
        .sum();
    let tools: u32 = request
        .tools
        .iter()
        .map(|t| estimate_tokens(&serde_json::to_string(t).unwrap_or_default()))
        .sum();
    system.saturating_add(messages).saturating_add(tools).max(1)
}

/// Tokens of one block, estimated: text by its length, images and documents by their kind.
fn block_tokens(block: &ContentBlock) -> u32 {
    let json = |v: &serde_json::Value| estimate_tokens(&v.to_string());
    match block {
        ContentBlock::Text(t) => estimate_tokens(t),
        ContentBlock::Reasoning { text, .. } => estimate_tokens(text),
        ContentBlock::RedactedReasoning(data) => u32::try_from(data.len() / 4).unwrap_or(u32::MAX),
        ContentBlock::Image(_) => crate::media::IMAGE_TOKENS,
        ContentBlock::Document(d) => d.estimated_tokens(),
        ContentBlock::ToolUse { input, .. } => json(input),
        ContentBlock::ToolResult { content, .. } => content
            .iter()
            .map(|c| match c {
                ToolResultContent::Text(t) => estimate_tokens(t),
                ToolResultContent::Json(v) => json(v),
            })
            .sum(),
        ContentBlock::CachePoint => 0,
    }
}

/// The `Fallbacks` and `Throttles` metrics of one invocation.
pub(crate) fn count_attempts(
    caller: &Caller,
    prepared: &Prepared,
    answered_by: &ModelTarget,
    attempts: &[Attempt],
) {
    let dims = Dims {
        tenant: &caller.tenant,
        model: &answered_by.base_id,
        feature: prepared.feature().unwrap_or("-"),
    };
    let fell_back = crate::invoke::fallbacks(attempts, Some(&answered_by.invoke_id)).len();
    telemetry::count("Fallbacks", fell_back as u64, dims);
    telemetry::count("Throttles", throttles(attempts), dims);
}

/// Throttles and open circuits among the attempts (the `Throttles` metric).
fn throttles(attempts: &[Attempt]) -> u64 {
    attempts
        .iter()
        .filter(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::Failed {
                    error: ModelErrorKind::Throttled,
                    ..
                } | AttemptOutcome::CircuitOpen
            )
        })
        .count() as u64
}

/// What a request's usage records are labelled with: its feature tag and prompt version.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Labels<'a> {
    pub(crate) feature: Option<&'a str>,
    pub(crate) prompt: Option<&'a crate::chat::PromptUsed>,
}

impl<'a> From<&'a Prepared> for Labels<'a> {
    fn from(p: &'a Prepared) -> Self {
        Self {
            feature: p.feature(),
            prompt: p.prompt.as_ref(),
        }
    }
}

impl Labels<'_> {
    fn prompt(&self) -> Option<String> {
        self.prompt.map(|p| format!("{}@{}", p.name, p.version))
    }
}

impl Shared {
    /// Writes one usage record per model call; returns the request's total cost (`None`
    /// when any call is unpriced).
    pub(crate) async fn charge(
        &self,
        caller: &Caller,
        labels: Labels<'_>,
        id: &str,
        charges: &Charges,
    ) -> Option<MicroUsd> {
        let mut total = Some(MicroUsd::ZERO);
        for (n, call) in charges.calls.iter().enumerate() {
            // The first call carries the request's ID, a repair `ID#1`: a replayed record
            // (spill, redelivery) is counted once.
            let id = if n == 0 {
                id.to_owned()
            } else {
                format!("{id}#{n}")
            };
            let cost = self.record_call(caller, labels, id, call).await;
            total = match (total, cost) {
                (Some(t), Some(c)) => Some(t + c),
                _ => None,
            };
        }
        total
    }

    /// Prices one call of base model `model`; `None` when unpriced (logged and counted
    /// loudly).
    pub(super) async fn price(
        &self,
        model: &str,
        usage: &TokenUsage,
        rate: Rate<'_>,
    ) -> Option<MicroUsd> {
        // Paid by the hour: known without the pricing table.
        if matches!(rate, Rate::Provisioned) {
            return Some(MicroUsd::ZERO);
        }
        let pricing = match self.configs.pricing().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, %model, "pricing unavailable: cost not computed");
                return None;
            }
        };
        let priced = match rate {
            Rate::Provisioned => Priced::Cost(MicroUsd::ZERO),
            Rate::Tier(tier, placement) => pricing.cost_at(model, usage, tier, placement),
            Rate::Batch => pricing.cost_in_batch(model, usage),
        };
        match priced {
            Priced::Cost(c) => Some(c),
            Priced::Unpriced => {
                tracing::warn!(%model, "UNPRICED MODEL: no price in the pricing table; cost not recorded as zero");
                metrics::counter!("UnpricedCalls").increment(1);
                // Base model IDs come from configuration (routing, Knowledge Bases): a
                // bounded label set.
                metrics::counter!("UnpricedCalls", "Model" => model.to_owned()).increment(1);
                None
            }
        }
    }

    /// Prices one model call, writes its usage record and metrics; returns its cost.
    async fn record_call(
        &self,
        caller: &Caller,
        labels: Labels<'_>,
        id: String,
        call: &Call,
    ) -> Option<MicroUsd> {
        let Call {
            target,
            usage,
            estimated,
            tier,
            bulk,
        } = call;
        let rate = if crate::routing::is_provisioned(&target.invoke_id) {
            Rate::Provisioned
        } else if *bulk {
            Rate::Batch
        } else {
            Rate::Tier(
                *tier,
                crate::pricing::Placement::of(&target.invoke_id, target.region.as_deref()),
            )
        };
        let cost = self.price(&target.base_id, usage, rate).await;
        let record = UsageRecord {
            id,
            tenant: caller.tenant.clone(),
            model: target.base_id.clone(),
            feature: labels.feature.map(str::to_owned),
            prompt: labels.prompt(),
            usage: *usage,
            cost,
            cached: false,
            estimated: *estimated,
            service_tier: *tier,
            key: caller.key_label.clone(),
            bulk: *bulk,
            region: target.region.clone(),
            provisioned: crate::routing::is_provisioned(&target.invoke_id)
                .then(|| target.invoke_id.clone()),
            at_ms: SystemClock.now_ms(),
        };
        self.write(&record).await;
        let dims = Dims {
            tenant: &caller.tenant,
            model: &target.base_id,
            feature: labels.feature.unwrap_or("-"),
        };
        telemetry::count(
            "InputTokens",
            usage.input + usage.cache_read + usage.cache_write,
            dims,
        );
        telemetry::count("OutputTokens", usage.output, dims);
        if let Some(c) = cost {
            telemetry::count("CostMicroUSD", c.0, dims);
        }
        self.admission.used(caller, usage.total()).await;
        cost
    }

    /// Records a cache hit: a request served, at no cost.
    pub(crate) async fn charge_cache_hit(
        &self,
        caller: &Caller,
        prepared: &Prepared,
        id: &str,
        base_model: &str,
    ) {
        let record = UsageRecord {
            id: id.to_owned(),
            tenant: caller.tenant.clone(),
            model: base_model.to_owned(),
            feature: prepared.feature().map(str::to_owned),
            prompt: Labels::from(prepared).prompt(),
            usage: TokenUsage::default(),
            cost: Some(MicroUsd::ZERO),
            cached: true,
            estimated: false,
            service_tier: None,
            key: caller.key_label.clone(),
            bulk: false,
            region: None,
            provisioned: None,
            at_ms: SystemClock.now_ms(),
        };
        self.write(&record).await;
    }

    pub(super) async fn write(&self, record: &UsageRecord) {
        if let Err(e) = self.ledger.record(record).await {
            // The ledger retries and spills; reaching here means both failed.
            metrics::counter!("UsageNotRecorded").increment(1);
            tracing::error!(error = %e, record = ?record, "USAGE NOT RECORDED: ledger and spill both failed");
        }
    }
}
