//! Reading the ledger's counters (cost-alarm, bulk admission, `quarry cost report`): every
//! counter is the sum of its shards.

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use quarry_core::ports::{Dependency, StoreError};
use quarry_core::usage::UsageRecord;

use super::keys::{COUNTER_SHARDS, logical_pk, shard_pk};
use super::{WHAT, s};
use crate::sdk::describe;

/// Counters of one ledger item (or of a counter's shards summed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub cached_requests: u64,
    pub unpriced_requests: u64,
    /// Calls charged on estimated tokens (cut off before Bedrock reported usage).
    pub estimated_requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_micro: u64,
}

impl Totals {
    /// The counters as (attribute, value) pairs, in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("requests", self.requests),
            ("cached_requests", self.cached_requests),
            ("unpriced_requests", self.unpriced_requests),
            ("estimated_requests", self.estimated_requests),
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cache_read_tokens", self.cache_read_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("cost_micro", self.cost_micro),
        ]
    }

    fn zip(&self, other: &Totals, f: impl Fn(u64, u64) -> u64) -> Totals {
        Totals {
            requests: f(self.requests, other.requests),
            cached_requests: f(self.cached_requests, other.cached_requests),
            unpriced_requests: f(self.unpriced_requests, other.unpriced_requests),
            estimated_requests: f(self.estimated_requests, other.estimated_requests),
            input_tokens: f(self.input_tokens, other.input_tokens),
            output_tokens: f(self.output_tokens, other.output_tokens),
            cache_read_tokens: f(self.cache_read_tokens, other.cache_read_tokens),
            cache_write_tokens: f(self.cache_write_tokens, other.cache_write_tokens),
            cost_micro: f(self.cost_micro, other.cost_micro),
        }
    }

    /// What is left of these totals once `part` is taken out (never below zero).
    pub fn minus(&self, part: &Totals) -> Totals {
        self.zip(part, u64::saturating_sub)
    }

    /// These totals and `other` together.
    pub fn plus(&self, other: &Totals) -> Totals {
        self.zip(other, u64::saturating_add)
    }

    /// The totals of one usage record.
    pub fn of(r: &UsageRecord) -> Totals {
        let u = &r.usage;
        Totals {
            requests: 1,
            cached_requests: u64::from(r.cached),
            unpriced_requests: u64::from(r.cost.is_none()),
            estimated_requests: u64::from(r.estimated),
            input_tokens: u.input,
            output_tokens: u.output,
            cache_read_tokens: u.cache_read,
            cache_write_tokens: u.cache_write,
            cost_micro: r.cost.map_or(0, |c| c.0),
        }
    }

    pub(crate) fn from_item(item: &HashMap<String, AttributeValue>) -> Self {
        let g = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self {
            requests: g("requests"),
            cached_requests: g("cached_requests"),
            unpriced_requests: g("unpriced_requests"),
            estimated_requests: g("estimated_requests"),
            input_tokens: g("input_tokens"),
            output_tokens: g("output_tokens"),
            cache_read_tokens: g("cache_read_tokens"),
            cache_write_tokens: g("cache_write_tokens"),
            cost_micro: g("cost_micro"),
        }
    }
}

fn failed(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(e))
}

/// Reading the ledger (cost-alarm, `quarry cost report`).
#[derive(Clone, Debug)]
pub struct LedgerReader {
    client: Client,
    table: String,
}

impl LedgerReader {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        Self::from_client(Client::new(sdk), table)
    }

    pub fn from_client(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
        }
    }

    /// A counter: its shards read together (one BatchGetItem, strongly consistent) and
    /// summed. Keys the batch leaves unprocessed are asked again; none is skipped.
    pub async fn get(&self, pk: &str, sk: &str) -> Result<Totals, StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for k in 0..COUNTER_SHARDS {
            keys = keys.keys(HashMap::from([
                ("pk".to_owned(), s(&shard_pk(pk, k))),
                ("sk".to_owned(), s(sk)),
            ]));
        }
        let mut pending = Some(keys.build().map_err(|e| failed(&e))?);
        let mut total = Totals::default();
        for attempt in 0..10u32 {
            let Some(keys) = pending.take() else {
                return Ok(total);
            };
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(6))).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| failed(&e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                total = total.plus(&Totals::from_item(item));
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        match pending {
            None => Ok(total),
            Some(_) => Err(StoreError::unavailable(
                Dependency::DynamoDb,
                WHAT,
                "counter shards still unprocessed after 10 attempts",
            )),
        }
    }

    /// Every tenant with a month total in the ledger, whether or not the directory still
    /// knows it (a removed tenant, `eval`): what a report must include to equal the bill.
    /// A scan of the month totals: for reports, not for the request path.
    pub async fn tenants_in(&self, month: &str) -> Result<Vec<String>, StoreError> {
        let suffix = format!("#M#{month}");
        let mut tenants = std::collections::BTreeSet::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :total AND begins_with(pk, :t)")
            .expression_attribute_values(":total", s("TOTAL"))
            .expression_attribute_values(":t", s("T#"))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed(&e))?;
            for item in page.items() {
                if let Some(tenant) = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .map(|pk| logical_pk(pk))
                    .and_then(|pk| pk.strip_prefix("T#"))
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                {
                    tenants.insert(tenant.to_owned());
                }
            }
        }
        Ok(tenants.into_iter().collect())
    }

    /// Every counter of a partition whose sort key starts with `prefix`: (rest of the key,
    /// totals), each summed over its shards.
    pub async fn list(&self, pk: &str, prefix: &str) -> Result<Vec<(String, Totals)>, StoreError> {
        let mut out: BTreeMap<String, Totals> = BTreeMap::new();
        for k in 0..COUNTER_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(&shard_pk(pk, k)))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| failed(&e))?;
                for item in page.items() {
                    if let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()) {
                        let key = sk.trim_start_matches(prefix).to_owned();
                        let sum = out.entry(key).or_default();
                        *sum = sum.plus(&Totals::from_item(item));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}
