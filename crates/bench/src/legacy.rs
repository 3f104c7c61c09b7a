//! The ledger, rate limits and cache statistics as they were before markers and shards:
//! every request wrote one transaction on the tenant's month, day and hour counters, added
//! to one per-minute rate item per tenant, and to one statistics item per prompt. Kept to
//! measure the difference under the capacity model (`ledger-capacity`), never deployed.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use quarry_aws::ledger::{Buckets, day_pk, hour_pk, marker_pk, month_pk};
use quarry_core::admission::Admission;
use quarry_core::cache::{CacheKey, CachedAnswer};
use quarry_core::error::Error;
use quarry_core::ports::{AdmissionControl, Dependency, ResponseCache, StoreError, UsageLedger};
use quarry_core::pricing::MicroUsd;
use quarry_core::routing::Route;
use quarry_core::tenancy::Caller;
use quarry_core::usage::UsageRecord;

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, "legacy ledger", e.to_string())
}

/// One transaction per record: the marker and up to nine counters.
pub struct LegacyLedger {
    pub client: Client,
    pub table: String,
}

impl LegacyLedger {
    fn counter(
        &self,
        pk: &str,
        sk: &str,
        r: &UsageRecord,
    ) -> Result<TransactWriteItem, StoreError> {
        let u = &r.usage;
        let mut expr = String::from(
            "ADD requests :one, input_tokens :in, output_tokens :out, cache_read_tokens :cr, cache_write_tokens :cw, cost_micro :cost",
        );
        if r.cached {
            expr.push_str(", cached_requests :one");
        }
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression(expr)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":in", n(u.input as i64))
            .expression_attribute_values(":out", n(u.output as i64))
            .expression_attribute_values(":cr", n(u.cache_read as i64))
            .expression_attribute_values(":cw", n(u.cache_write as i64))
            .expression_attribute_values(":cost", n(r.cost.map_or(0, |c| c.0 as i64)))
            .build()
            .map_err(failed)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[async_trait]
impl UsageLedger for LegacyLedger {
    async fn record(&self, r: &UsageRecord) -> Result<(), StoreError> {
        let b = Buckets::of(r.at_ms);
        let marker = Put::builder()
            .table_name(&self.table)
            .item("pk", s(&marker_pk(&r.tenant, &r.id)))
            .item("sk", s("REC"))
            .item("tenant", s(&r.tenant))
            .item("model", s(&r.model))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(failed)?;
        let (month, day) = (month_pk(&r.tenant, &b.month), day_pk(&r.tenant, &b.day));
        let model = format!("MODEL#{}", r.model);
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker).build())
            .transact_items(self.counter(&month, "TOTAL", r)?)
            .transact_items(self.counter(&month, &model, r)?)
            .transact_items(self.counter(&month, &format!("DAY#{}", b.day), r)?)
            .transact_items(self.counter(&day, "TOTAL", r)?)
            .transact_items(self.counter(&day, &model, r)?)
            .transact_items(self.counter(&hour_pk(&r.tenant, &b.hour), "TOTAL", r)?);
        if let Some(f) = &r.feature {
            tx = tx
                .transact_items(self.counter(&month, &format!("FEATURE#{f}"), r)?)
                .transact_items(self.counter(&day, &format!("FEATURE#{f}"), r)?);
        }
        if let Some(k) = &r.key {
            tx = tx.transact_items(self.counter(&month, &format!("KEY#{k}"), r)?);
        }
        tx.send().await.map_err(failed)?;
        Ok(())
    }
}

/// Budgets as now, rate limits on one item per tenant and minute: a read of the token
/// count and an ADD of the request before each call, an ADD of the tokens after it.
pub struct LegacyAdmission {
    pub budgets: Arc<dyn AdmissionControl>,
    pub client: Client,
    pub table: String,
}

impl LegacyAdmission {
    fn pk(tenant: &str) -> String {
        format!(
            "RATE#{tenant}#{}",
            chrono::Utc::now().timestamp().div_euclid(60)
        )
    }

    async fn add(&self, tenant: &str, kind: &str, amount: u64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::pk(tenant)))
            .key("sk", s(kind))
            .update_expression("ADD #c :n")
            .expression_attribute_names("#c", "count")
            .expression_attribute_values(":n", n(amount as i64))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(failed)?;
        Ok(out
            .attributes()
            .and_then(|a| a.get("count"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

#[async_trait]
impl AdmissionControl for LegacyAdmission {
    async fn admit(
        &self,
        caller: &Caller,
        feature: Option<&str>,
        route: &Route,
    ) -> Result<Admission, Error> {
        let mut unlimited = caller.clone();
        unlimited.policy.rate_limits = None;
        let decision = self.budgets.admit(&unlimited, feature, route).await?;
        let Some(limits) = caller.policy.rate_limits else {
            return Ok(decision);
        };
        if limits.tokens_per_minute.is_some() {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(&Self::pk(&caller.tenant)))
                .key("sk", s("TOK"))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| Error::Dependency(failed(e)))?;
        }
        if limits.requests_per_minute.is_some() {
            self.add(&caller.tenant, "REQ", 1)
                .await
                .map_err(Error::Dependency)?;
        }
        Ok(decision)
    }

    async fn used(&self, caller: &Caller, tokens: u64) {
        if caller
            .policy
            .rate_limits
            .and_then(|l| l.tokens_per_minute)
            .is_some()
        {
            let _ = self.add(&caller.tenant, "TOK", tokens).await;
        }
    }

    async fn peek(&self, caller: &Caller, feature: Option<&str>, route: &Route) -> Admission {
        self.budgets.peek(caller, feature, route).await
    }
}

/// The response cache as now, its statistics on one item per tenant and prompt.
pub struct LegacyCacheStats {
    pub cache: Arc<dyn ResponseCache>,
    pub client: Client,
    pub table: String,
}

#[async_trait]
impl ResponseCache for LegacyCacheStats {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, StoreError> {
        self.cache.get(key).await
    }

    async fn put(
        &self,
        key: &CacheKey,
        answer: &CachedAnswer,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.cache.put(key, answer, ttl).await
    }

    async fn count(&self, key: &CacheKey, hit: bool, saved: MicroUsd) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&format!("stats#{}#{}", key.tenant, key.prompt)))
            .update_expression("ADD hits :h, misses :m, saved_micro :s")
            .expression_attribute_values(":h", n(i64::from(hit)))
            .expression_attribute_values(":m", n(i64::from(!hit)))
            .expression_attribute_values(":s", n(saved.0 as i64))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }
}
