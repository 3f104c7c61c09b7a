//! The response cache and idempotency records on DynamoDB (the cache table).
//!
//! Cache items: `pk` = the key's hash (tenant included), `tenant`, `prompt` (the
//! `by_tenant` index, for purge and stats), `answer` (JSON), `expires_at`. DynamoDB's TTL
//! deletes lazily, so expiry is checked on every read.
//!
//! Idempotency items: `pk` = `idem#` + SHA-256 of (tenant, key), `state` (`in_progress` or
//! `done`), `body_hash`, the stored response, and `expires_at`: a short lease while in
//! progress (a crashed request frees its key), the idempotency window once done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use quarry_core::cache::{CacheKey, CachedAnswer, Claim};
use quarry_core::ports::{Clock, Dependency, StoreError, SystemClock};
use quarry_core::ports::{IdempotencyStore, ResponseCache};
use quarry_core::pricing::MicroUsd;
use sha2::{Digest, Sha256};

use crate::sdk::describe;
use crate::settings::CACHE_TENANT_INDEX;

/// DynamoDB items hold 400 KB; answers near that are not cached (they still return).
const MAX_ANSWER_BYTES: usize = 350 * 1024;
/// How long an in-progress idempotency claim holds its key.
const IN_PROGRESS_LEASE: Duration = Duration::from_secs(300);

const WHAT: &str = "response cache";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn err(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(e))
}

/// The same table keeps idempotency records: their failures say so.
const IDEMPOTENCY: &str = "idempotency store";

fn idem_err(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, IDEMPOTENCY, describe(e))
}

#[derive(Clone)]
pub struct DynamoCache {
    client: Client,
    table: String,
    /// Expiry is checked on read (DynamoDB's TTL deletes lazily), against this clock.
    clock: Arc<dyn Clock>,
}

impl DynamoCache {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        Self::with_clock(sdk, table, Arc::new(SystemClock))
    }

    pub fn with_clock(sdk: &SdkConfig, table: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_owned(),
            clock,
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Cache entries of a tenant (optionally one prompt's): their keys.
    async fn keys_of(
        &self,
        tenant: &str,
        prompt: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut keys = Vec::new();
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(CACHE_TENANT_INDEX)
            .expression_attribute_names("#t", "tenant")
            .expression_attribute_values(":t", s(tenant));
        query = match prompt {
            Some(p) => query
                .key_condition_expression("#t = :t AND #p = :p")
                .expression_attribute_names("#p", "prompt")
                .expression_attribute_values(":p", s(p)),
            None => query.key_condition_expression("#t = :t"),
        };
        let mut pages = query.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| err(&e))?;
            for item in page.items() {
                if let (Some(pk), Some(p)) = (get_s(item, "pk"), get_s(item, "prompt")) {
                    keys.push((pk.to_owned(), p.to_owned()));
                }
            }
        }
        Ok(keys)
    }

    /// The counters of a tenant's prompt: items of their own, found through the tenant
    /// index as entries are (`stats#` keys are never entries). Spread over
    /// [`STATS_SHARDS`] items, one picked per count, so a popular prompt's hits are no hot
    /// key; [`DynamoCache::stats`] sums every item it finds. Shard 0 is the key counts had
    /// before sharding.
    fn stats_pk(tenant: &str, prompt: &str, shard: u32) -> String {
        let mut h = Sha256::new();
        h.update(tenant.as_bytes());
        h.update([0]);
        h.update(prompt.as_bytes());
        if shard > 0 {
            h.update([0]);
            h.update(shard.to_be_bytes());
        }
        format!("{STATS_PREFIX}{}", hex::encode(h.finalize()))
    }

    /// Deletes a tenant's entries (one prompt's, or all); returns how many. The statistics
    /// stay.
    pub async fn purge(&self, tenant: &str, prompt: Option<&str>) -> Result<usize, StoreError> {
        let mut keys = self.keys_of(tenant, prompt).await?;
        keys.retain(|(pk, _)| !pk.starts_with(STATS_PREFIX));
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|(pk, _)| {
                    let delete = DeleteRequest::builder().key("pk", s(pk)).build().ok()?;
                    Some(WriteRequest::builder().delete_request(delete).build())
                })
                .collect();
            // BatchWriteItem may leave some unprocessed under load: retry those.
            for _ in 0..5 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| err(&e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(keys.len())
    }

    /// Per prompt of a tenant: entries, hits, misses and the spend hits saved.
    pub async fn stats(
        &self,
        tenant: &str,
    ) -> Result<std::collections::BTreeMap<String, PromptStats>, StoreError> {
        let mut by_prompt: std::collections::BTreeMap<String, PromptStats> =
            std::collections::BTreeMap::new();
        for (pk, prompt) in self.keys_of(tenant, None).await? {
            let stats = by_prompt.entry(prompt).or_default();
            if !pk.starts_with(STATS_PREFIX) {
                stats.entries += 1;
                continue;
            }
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .send()
                .await
                .map_err(|e| err(&e))?;
            if let Some(item) = out.item() {
                let n = |k: &str| u64::try_from(get_n(item, k).unwrap_or(0)).unwrap_or(0);
                stats.hits += n("hits");
                stats.misses += n("misses");
                stats.saved_micro += n("saved_micro");
            }
        }
        Ok(by_prompt)
    }

    fn idem_pk(tenant: &str, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(tenant.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        format!("idem#{}", hex::encode(h.finalize()))
    }
}

/// Keys of the statistics items.
const STATS_PREFIX: &str = "stats#";
/// Items a prompt's statistics are spread over.
const STATS_SHARDS: u32 = 16;

/// A prompt's cache statistics for a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptStats {
    /// Entries stored now.
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    /// What the hits would have cost, at the price of the day of each hit.
    pub saved_micro: u64,
}

#[async_trait]
impl ResponseCache for DynamoCache {
    async fn count(&self, key: &CacheKey, hit: bool, saved: MicroUsd) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                s(&Self::stats_pk(
                    &key.tenant,
                    &key.prompt,
                    crate::ledger::keys::random_shard(STATS_SHARDS),
                )),
            )
            .update_expression(
                "SET tenant = :t, prompt = :p ADD hits :h, misses :m, saved_micro :s",
            )
            .expression_attribute_values(":t", s(&key.tenant))
            .expression_attribute_values(":p", s(&key.prompt))
            .expression_attribute_values(":h", n(i64::from(hit)))
            .expression_attribute_values(":m", n(i64::from(!hit)))
            .expression_attribute_values(":s", n(i64::try_from(saved.0).unwrap_or(i64::MAX)))
            .send()
            .await
            .map_err(|e| err(&e))?;
        Ok(())
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&key.hash))
            .send()
            .await
            .map_err(|e| err(&e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        // TTL deletion is lazy: an expired item is a miss.
        if get_n(item, "expires_at").is_none_or(|t| t <= self.clock.now_secs()) {
            return Ok(None);
        }
        // The tenant is in the hash already; this check makes a mix-up impossible to miss.
        if get_s(item, "tenant") != Some(key.tenant.as_str()) {
            tracing::error!("cache entry tenant mismatch; ignoring the entry");
            return Ok(None);
        }
        let Some(answer) = get_s(item, "answer") else {
            return Ok(None);
        };
        serde_json::from_str(answer).map(Some).map_err(|e| {
            StoreError::invalid(
                Dependency::DynamoDb,
                WHAT,
                format!("unreadable cache entry: {e}"),
            )
        })
    }

    async fn put(
        &self,
        key: &CacheKey,
        answer: &CachedAnswer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(answer)
            .map_err(|e| StoreError::invalid(Dependency::DynamoDb, WHAT, e.to_string()))?;
        if json.len() > MAX_ANSWER_BYTES {
            tracing::info!(bytes = json.len(), "answer too large to cache");
            return Ok(());
        }
        let now = self.clock.now_secs();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&key.hash))
            .item("tenant", s(&key.tenant))
            .item("prompt", s(&key.prompt))
            .item("answer", s(&json))
            .item("created_at", n(now))
            .item("expires_at", n(now + ttl.as_secs() as i64))
            .send()
            .await
            .map_err(|e| err(&e))?;
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for DynamoCache {
    async fn claim(
        &self,
        tenant: &str,
        key: &str,
        body_hash: &str,
        _window: Duration,
    ) -> Result<Claim, StoreError> {
        let pk = Self::idem_pk(tenant, key);
        let now = self.clock.now_secs();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("state", s("in_progress"))
            .item("body_hash", s(body_hash))
            .item("expires_at", n(now + IN_PROGRESS_LEASE.as_secs() as i64))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Claim::Fresh),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(idem_err(&e)),
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| idem_err(&e))?;
        let Some(item) = out.item() else {
            // Expired and removed between the two calls: the caller may simply retry.
            return Ok(Claim::InProgress);
        };
        if get_s(item, "body_hash") != Some(body_hash) {
            return Ok(Claim::Mismatch);
        }
        match (
            get_s(item, "state"),
            get_n(item, "status"),
            get_s(item, "body"),
        ) {
            (Some("done"), Some(status), Some(body)) => Ok(Claim::Replay {
                status: u16::try_from(status).unwrap_or(200),
                body: serde_json::from_str(body).map_err(|e| {
                    StoreError::invalid(Dependency::DynamoDb, IDEMPOTENCY, e.to_string())
                })?,
            }),
            _ => Ok(Claim::InProgress),
        }
    }

    async fn complete(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &serde_json::Value,
        window: Duration,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&Self::idem_pk(tenant, key)))
            .update_expression("SET #s = :done, #st = :status, #b = :body, expires_at = :exp")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#b", "body")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":status", n(i64::from(status)))
            .expression_attribute_values(":body", s(&body.to_string()))
            .expression_attribute_values(":exp", n(self.clock.now_secs() + window.as_secs() as i64))
            .send()
            .await
            .map_err(|e| idem_err(&e))?;
        Ok(())
    }

    async fn abandon(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&Self::idem_pk(tenant, key)))
            .send()
            .await
            .map_err(|e| idem_err(&e))?;
        Ok(())
    }
}
