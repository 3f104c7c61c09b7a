//! Budget state and rate limits on DynamoDB (the usage table), and the admission control
//! chat and batch consult before the cache and the model.
//!
//! * `BUDGET#{tenant}` / `STATE`: the state cost-alarm writes (`ok`, `warning`,
//!   `degraded`, `blocked`), read by admission and cached briefly in the warm Lambda;
//! * `NOTICE#{tenant}` / `{key}`: one item per notification sent (a threshold crossing in a
//!   month, a runaway hour), so none is sent twice;
//! * `RATE#{tenant}#{minute}` / `REQ` and `TOK`: per-minute counters (TTL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use quarry_core::Error;
use quarry_core::admission::{Admission, AdmissionControl};
use quarry_core::budget::{BudgetLevel, BudgetState};
use quarry_core::routing::Route;
use quarry_core::tenancy::Caller;
use tokio::time::Instant;

use crate::ledger::Buckets;
use crate::sdk::describe;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The current month (`2026-11`, UTC).
pub fn current_month() -> String {
    Buckets::of(now_secs() * 1000).month
}

#[derive(Clone, Debug)]
pub struct DynamoBudgets {
    client: Client,
    table: String,
}

impl DynamoBudgets {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_owned(),
        }
    }

    pub async fn state(&self, tenant: &str) -> Result<Option<BudgetState>, String> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&format!("BUDGET#{tenant}")))
            .key("sk", s("STATE"))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("state"))
            .and_then(|v| v.as_s().ok())
            .and_then(|v| serde_json::from_str(v).ok()))
    }

    pub async fn set_state(&self, tenant: &str, state: &BudgetState) -> Result<(), String> {
        let json = serde_json::to_string(state).map_err(|e| e.to_string())?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("BUDGET#{tenant}")))
            .item("sk", s("STATE"))
            .item("state", s(&json))
            .item("level", s(&format!("{:?}", state.level).to_lowercase()))
            .item("updated_at", n(now_secs()))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(())
    }

    /// True the first time `key` is noticed for `tenant` (the notification is to be sent).
    pub async fn first_notice(
        &self,
        tenant: &str,
        key: &str,
        keep: Duration,
    ) -> Result<bool, String> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("NOTICE#{tenant}")))
            .item("sk", s(key))
            .item("expires_at", n(now_secs() + keep.as_secs() as i64))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(describe(&e)),
        }
    }

    /// Releases a notice (its notification could not be sent).
    pub async fn forget_notice(&self, tenant: &str, key: &str) -> Result<(), String> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("NOTICE#{tenant}")))
            .key("sk", s(key))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(())
    }

    /// A per-minute counter's value.
    async fn rate(&self, tenant: &str, minute: i64, kind: &str) -> Result<i64, String> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&format!("RATE#{tenant}#{minute}")))
            .key("sk", s(kind))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("count"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Adds to a per-minute counter; returns the new value.
    async fn add_rate(
        &self,
        tenant: &str,
        minute: i64,
        kind: &str,
        amount: i64,
    ) -> Result<i64, String> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&format!("RATE#{tenant}#{minute}")))
            .key("sk", s(kind))
            .update_expression("ADD #c :n SET expires_at = :exp")
            .expression_attribute_names("#c", "count")
            .expression_attribute_values(":n", n(amount))
            .expression_attribute_values(":exp", n((minute + 5) * 60))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get("count"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

/// Budgets and rate limits, enforced.
pub struct BudgetAdmission {
    store: DynamoBudgets,
    max_age: Duration,
    states: Mutex<HashMap<String, (Option<BudgetState>, Instant)>>,
}

impl BudgetAdmission {
    /// `max_age`: how long a tenant's budget state is cached in the warm process.
    pub fn new(sdk: &SdkConfig, table: &str, max_age: Duration) -> Self {
        Self {
            store: DynamoBudgets::new(sdk, table),
            max_age,
            states: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, tenant: &str) -> Option<Option<BudgetState>> {
        let states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        states
            .get(tenant)
            .filter(|(_, at)| at.elapsed() < self.max_age)
            .map(|(s, _)| s.clone())
    }

    /// The tenant's state for this month (a state of an earlier month no longer applies).
    async fn state(&self, tenant: &str) -> Option<BudgetState> {
        let state = match self.cached(tenant) {
            Some(s) => s,
            None => match self.store.state(tenant).await {
                Ok(s) => {
                    let mut states = self
                        .states
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    states.insert(tenant.to_owned(), (s.clone(), Instant::now()));
                    s
                }
                Err(e) => {
                    // Fail open: an unreadable state must not stop every request.
                    metrics::counter!("BudgetStateErrors").increment(1);
                    tracing::warn!(error = %e, %tenant, "budget state unavailable; admitting");
                    None
                }
            },
        };
        state.filter(|s| s.month == current_month())
    }

    fn decision(state: Option<BudgetState>, feature: Option<&str>) -> Result<Admission, Error> {
        let Some(state) = state else {
            return Ok(Admission::Proceed);
        };
        if state.level == BudgetLevel::Blocked {
            return Err(Error::BudgetExceeded(format!(
                "{}; requests are refused until the budget resets next month or is raised",
                state.reason
            )));
        }
        if let Some(f) = feature
            && state.blocked_features.iter().any(|b| b == f)
        {
            return Err(Error::BudgetExceeded(format!(
                "the monthly budget of feature '{f}' is spent"
            )));
        }
        match (state.level, state.degrade_to) {
            (BudgetLevel::Degraded, Some(tier)) => Ok(Admission::Degrade {
                tier,
                reason: state.reason,
            }),
            _ => Ok(Admission::Proceed),
        }
    }
}

#[async_trait]
impl AdmissionControl for BudgetAdmission {
    async fn admit(
        &self,
        caller: &Caller,
        feature: Option<&str>,
        _route: &Route,
    ) -> Result<Admission, Error> {
        let decision = Self::decision(self.state(&caller.tenant).await, feature)?;
        if let Some(limits) = caller.policy.rate_limits {
            let now = now_secs();
            let minute = now / 60;
            let retry_after = Duration::from_secs((60 - now % 60).max(1) as u64);
            let refuse = |what: &str, limit: u64| Error::RateLimited {
                message: format!(
                    "rate limit of {limit} {what} per minute reached for tenant '{}'",
                    caller.tenant
                ),
                retry_after,
            };
            if let Some(limit) = limits.tokens_per_minute {
                match self.store.rate(&caller.tenant, minute, "TOK").await {
                    Ok(used) if used as u64 >= limit => return Err(refuse("tokens", limit)),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "rate counter unavailable; admitting"),
                }
            }
            if let Some(limit) = limits.requests_per_minute {
                match self.store.add_rate(&caller.tenant, minute, "REQ", 1).await {
                    Ok(count) if count as u64 > limit => return Err(refuse("requests", limit)),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "rate counter unavailable; admitting"),
                }
            }
        }
        Ok(decision)
    }

    async fn used(&self, caller: &Caller, tokens: u64) {
        if caller
            .policy
            .rate_limits
            .and_then(|l| l.tokens_per_minute)
            .is_some()
            && let Err(e) = self
                .store
                .add_rate(&caller.tenant, now_secs() / 60, "TOK", tokens as i64)
                .await
        {
            tracing::warn!(error = %e, "tokens not counted against the rate limit");
        }
    }

    async fn peek(&self, caller: &Caller, feature: Option<&str>, _route: &Route) -> Admission {
        Self::decision(self.state(&caller.tenant).await, feature).unwrap_or(Admission::Proceed)
    }
}
