//! The emulator's shared state: configuration, faults, call counters, recorded requests and
//! the emulated prompt cache and batch inference jobs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::batch::JobStore;
use crate::catalog::ResolvedModel;
use crate::config::{EmulatorConfig, Latency};
use crate::faults::{CallFaults, FaultSpec};
use crate::generate::Prng;
use crate::knowledge::KnowledgeCache;
use crate::knowledge::corpus::Chunk;
use crate::render::{Timing, Usage};
use crate::tally::CachePrefix;

/// A poisoned lock only means another request panicked mid-update; the data is still
/// counters and settings, so keep serving rather than fail every later call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallCount {
    pub calls: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub seq: u64,
    pub operation: String,
    pub model_id: String,
    /// The body as JSON when it is JSON, else as (lossy) text.
    pub body: serde_json::Value,
}

pub struct EmulatorState {
    config: RwLock<EmulatorConfig>,
    faults: Mutex<BTreeMap<String, FaultSpec>>,
    counters: Mutex<BTreeMap<(String, String), CallCount>>,
    recorded: Mutex<VecDeque<(u64, String, String, Bytes)>>,
    prompt_cache: Mutex<HashMap<[u8; 32], Instant>>,
    rng: Mutex<Prng>,
    seq: AtomicU64,
    knowledge: KnowledgeCache,
    batch: JobStore,
}

impl EmulatorState {
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            batch: JobStore::new(config.batch.faults.clone(), config.seed),
            faults: Mutex::new(config.faults.clone()),
            rng: Mutex::new(Prng::new(config.seed)),
            config: RwLock::new(config),
            counters: Mutex::new(BTreeMap::new()),
            recorded: Mutex::new(VecDeque::new()),
            prompt_cache: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            knowledge: KnowledgeCache::default(),
        }
    }

    pub fn config(&self) -> RwLockReadGuard<'_, EmulatorConfig> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn config_mut(&self) -> RwLockWriteGuard<'_, EmulatorConfig> {
        self.config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A Bedrock-style request ID (UUID-shaped), unique per call.
    pub fn request_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut rng = Prng::new(n ^ 0xA5A5_5A5A_0F0F_F0F0);
        let a = rng.next_u64();
        let b = rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a as u16) & 0x0fff,
            ((b >> 48) as u16 & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    pub fn record(&self, operation: &str, model_id: &str, body: &Bytes) {
        let capacity = self.config().recorded_requests;
        if capacity == 0 {
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut recorded = lock(&self.recorded);
        while recorded.len() >= capacity {
            recorded.pop_front();
        }
        recorded.push_back((seq, operation.to_owned(), model_id.to_owned(), body.clone()));
    }

    pub fn recorded(&self, limit: usize) -> Vec<RecordedRequest> {
        let recorded = lock(&self.recorded);
        let skip = recorded.len().saturating_sub(limit);
        recorded
            .iter()
            .skip(skip)
            .map(|(seq, op, model, body)| RecordedRequest {
                seq: *seq,
                operation: op.clone(),
                model_id: model.clone(),
                body: serde_json::from_slice(body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(body).into())
                }),
            })
            .collect()
    }

    /// Forgets the recorded requests; returns how many there were.
    pub fn clear_recorded(&self) -> usize {
        let mut recorded = lock(&self.recorded);
        let n = recorded.len();
        recorded.clear();
        n
    }

    pub fn count(&self, operation: &str, model: &str, error: bool) {
        let mut counters = lock(&self.counters);
        let entry = counters
            .entry((operation.to_owned(), model.to_owned()))
            .or_default();
        entry.calls += 1;
        if error {
            entry.errors += 1;
        }
    }

    /// Calls of `operation` (any when `None`) to `model` (any when `None`).
    pub fn calls(&self, operation: Option<&str>, model: Option<&str>) -> u64 {
        lock(&self.counters)
            .iter()
            .filter(|((op, m), _)| {
                operation.is_none_or(|o| o == op) && model.is_none_or(|x| x == m)
            })
            .map(|(_, c)| c.calls)
            .sum()
    }

    pub fn counters(&self) -> BTreeMap<(String, String), CallCount> {
        lock(&self.counters).clone()
    }

    /// Decides this call's faults: the model's own first, then the `*` ones.
    pub fn take_faults(&self, model: &str) -> CallFaults {
        let roll = lock(&self.rng).unit();
        let mut faults = lock(&self.faults);
        let own = faults
            .get_mut(model)
            .map(|f| f.take(roll))
            .unwrap_or_default();
        if own.fail.is_some() {
            return own;
        }
        let any = faults
            .get_mut("*")
            .map(|f| f.take(roll))
            .unwrap_or_default();
        CallFaults {
            fail: any.fail,
            extra_delay_ms: own.extra_delay_ms + any.extra_delay_ms,
            mid_stream: own.mid_stream.or(any.mid_stream),
            malformed_output: own.malformed_output || any.malformed_output,
            stop_reason: own.stop_reason.or(any.stop_reason),
        }
    }

    pub fn faults(&self) -> BTreeMap<String, FaultSpec> {
        lock(&self.faults).clone()
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut BTreeMap<String, FaultSpec>)) {
        f(&mut lock(&self.faults));
    }

    pub fn timing(&self, model: &ResolvedModel, extra_delay_ms: u64) -> Timing {
        let latency: Latency = model.spec.latency.unwrap_or(self.config().latency);
        Timing {
            ttft: Duration::from_millis(latency.ttft_ms + extra_delay_ms),
            per_token: Duration::from_millis(latency.per_token_ms),
        }
    }

    /// Splits input tokens into fresh, cache-read and cache-write, remembering new prefixes
    /// for their checkpoint's lifetime (5 minutes by default, or an hour, as on Bedrock).
    pub fn usage(
        &self,
        input_tokens: u32,
        cache_prefix: Option<CachePrefix>,
        output: u32,
    ) -> Usage {
        let Some(prefix) = cache_prefix else {
            return Usage {
                input: input_tokens,
                output,
                ..Usage::default()
            };
        };
        let ttl = prefix.ttl.lifetime(self.config().prompt_cache_ttl_secs);
        let now = Instant::now();
        let mut cache = lock(&self.prompt_cache);
        cache.retain(|_, expires| *expires > now);
        let hit = cache.contains_key(&prefix.key);
        // Reading a cached prefix refreshes its lifetime, as Bedrock's does; a longer-lived
        // entry is never shortened by a read with the default TTL.
        let expires = cache
            .get(&prefix.key)
            .copied()
            .map_or(now + ttl, |e| e.max(now + ttl));
        cache.insert(prefix.key, expires);
        let fresh = input_tokens.saturating_sub(prefix.tokens);
        if hit {
            Usage {
                input: fresh,
                output,
                cache_read: prefix.tokens,
                ..Usage::default()
            }
        } else {
            Usage {
                input: fresh,
                output,
                cache_write: prefix.tokens,
                cache_write_ttl: prefix.ttl,
                ..Usage::default()
            }
        }
    }

    /// The chunks of knowledge base `id`, read from its folder at first use.
    pub fn knowledge_base(
        &self,
        id: &str,
    ) -> Result<std::sync::Arc<Vec<Chunk>>, crate::BedrockError> {
        let config = self.config();
        self.knowledge.get(&config, id)
    }

    /// Batch inference jobs and their faults.
    pub fn batch(&self) -> &JobStore {
        &self.batch
    }

    /// Forgets counters, recorded requests, the prompt cache and batch jobs; faults go back
    /// to the configured ones.
    pub fn reset(&self) {
        let configured = self.config().faults.clone();
        let batch_faults = self.config().batch.faults.clone();
        self.batch.reset(batch_faults);
        *lock(&self.faults) = configured;
        lock(&self.counters).clear();
        lock(&self.recorded).clear();
        lock(&self.prompt_cache).clear();
        // Corpora are read again at their next query, picking up edited files.
        self.knowledge.clear();
    }
}
