//! The usage ledger port: every answered request adds its tokens and cost, exactly once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::TokenUsage;
use crate::pricing::MicroUsd;

/// One request's usage. `id` makes recording idempotent: a record replayed (from the spill
/// queue, or a redelivered batch message) is counted once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub id: String,
    pub tenant: String,
    /// Base model ID (what pricing and budgets use).
    pub model: String,
    pub feature: Option<String>,
    pub usage: TokenUsage,
    /// None: the model has no price (counted as unpriced, never as zero).
    pub cost: Option<MicroUsd>,
    /// Served from the response cache (no model call, no cost).
    pub cached: bool,
    /// Tokens estimated (the stream ended before Bedrock reported usage).
    #[serde(default)]
    pub estimated: bool,
    /// The label of the API key that made the call (a developer's, for per-key budgets and
    /// reports); `None` for batch work and unlabelled callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The service tier that served the call, when Bedrock said (priced by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<crate::model::ServiceTier>,
    /// Processed by Bedrock batch inference (a bulk job's record), at the batch price.
    #[serde(default)]
    pub bulk: bool,
    /// The region that served the call, when the route named one (else the deployment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The provisioned model (ARN) that served it: its tokens count, its price is the
    /// hourly commitment (cost 0 here, never unpriced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<String>,
    /// The prompt version that made the request (`name@version`): what feedback on the
    /// request is reported by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
}

use crate::ports::StoreError;
use crate::ports::UsageLedger;

/// Records nothing (unit tests of the core).
pub struct NoLedger;

#[async_trait]
impl UsageLedger for NoLedger {
    async fn record(&self, _: &UsageRecord) -> Result<(), StoreError> {
        Ok(())
    }
}
