//! The emulator's shared state: configuration, faults, call counters, recorded requests,
//! the emulated prompt cache, batch inference jobs and application inference profiles.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::batch::JobStore;
use crate::calls::CallLog;
pub use crate::calls::{CallCount, CallKey, Caller, RecordedRequest};
use crate::catalog::ResolvedModel;
use crate::config::{EmulatorConfig, Latency};
use crate::faults::{self, CallFaults, FaultSpec};
use crate::generate::Prng;
use crate::knowledge::KnowledgeCache;
use crate::knowledge::corpus::Chunk;
use crate::profiles::ProfileStore;
use crate::render::{Timing, Usage};
use crate::tally::CachePrefix;

/// A poisoned lock only means another request panicked mid-update; the data is still
/// counters and settings, so keep serving rather than fail every later call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A model's own faults and the `*` ones of one fault table.
fn own_and_any<'a>(
    specs: &'a mut BTreeMap<String, FaultSpec>,
    model: &str,
) -> (Option<&'a mut FaultSpec>, Option<&'a mut FaultSpec>) {
    let mut own = None;
    let mut any = None;
    for (key, spec) in specs.iter_mut() {
        if key == model {
            own = Some(spec);
        } else if key == "*" {
            any = Some(spec);
        }
    }
    (own, any)
}

/// Faults by region, then by base model ID or `*`.
pub type RegionFaults = BTreeMap<String, BTreeMap<String, FaultSpec>>;

pub struct EmulatorState {
    config: RwLock<EmulatorConfig>,
    faults: Mutex<BTreeMap<String, FaultSpec>>,
    region_faults: Mutex<RegionFaults>,
    calls: CallLog,
    profiles: ProfileStore,
    prompt_cache: Mutex<HashMap<[u8; 32], Instant>>,
    rng: Mutex<Prng>,
    seq: AtomicU64,
    knowledge: KnowledgeCache,
    batch: JobStore,
    capacity: crate::provisioned::Capacity,
}

impl EmulatorState {
    pub fn new(config: EmulatorConfig) -> Self {
        Self {
            batch: JobStore::new(config.batch.faults.clone(), config.seed),
            faults: Mutex::new(config.faults.clone()),
            region_faults: Mutex::new(config.region_faults.clone()),
            profiles: ProfileStore::new(config.seed),
            rng: Mutex::new(Prng::new(config.seed)),
            config: RwLock::new(config),
            calls: CallLog::default(),
            prompt_cache: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            knowledge: KnowledgeCache::default(),
            capacity: crate::provisioned::Capacity::default(),
        }
    }

    /// Takes a provisioned model's capacity for a call; `false`: it is at capacity.
    pub fn provisioned_take(&self, raw_id: &str, tokens: u64) -> bool {
        let per_minute = {
            let config = self.config();
            match crate::provisioned::spec_of(&config.provisioned_models, raw_id) {
                Some(spec) => spec.tokens_per_minute,
                None => return true,
            }
        };
        self.capacity.take(raw_id, tokens, per_minute)
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

    /// Keeps the request for `/_emulator/requests`, under the identifier the caller sent.
    pub fn record(&self, operation: &str, model_id: &str, region: &str, body: &Bytes) {
        self.record_traced(operation, model_id, region, None, body);
    }

    /// [`Self::record`], with the call's `X-Amzn-Trace-Id` header.
    pub fn record_traced(
        &self,
        operation: &str,
        model_id: &str,
        region: &str,
        trace_header: Option<&str>,
        body: &Bytes,
    ) {
        let capacity = self.config().recorded_requests;
        if capacity == 0 {
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let received = crate::calls::Received {
            operation,
            model_id,
            region,
            trace_header,
        };
        self.calls.record(capacity, seq, received, body);
    }

    pub fn recorded(&self, limit: usize) -> Vec<RecordedRequest> {
        self.calls.recorded(limit)
    }

    /// Forgets the recorded requests; returns how many there were.
    pub fn clear_recorded(&self) -> usize {
        self.calls.clear_recorded()
    }

    pub fn count(&self, operation: &str, model: &str, caller: Caller<'_>, error: bool) {
        self.calls.count(operation, model, caller, error);
    }

    /// Calls of `operation` (any when `None`) to `model` (any when `None`), from every region.
    pub fn calls(&self, operation: Option<&str>, model: Option<&str>) -> u64 {
        self.calls.calls_where(|k| {
            operation.is_none_or(|o| o == k.operation) && model.is_none_or(|m| m == k.model)
        })
    }

    /// Calls of `operation` (any when `None`) signed for `region`.
    pub fn calls_in_region(&self, operation: Option<&str>, region: &str) -> u64 {
        self.calls
            .calls_where(|k| operation.is_none_or(|o| o == k.operation) && k.region == region)
    }

    /// Calls of `operation` (any when `None`) that named application inference profile
    /// `profile_arn`.
    pub fn calls_via_profile(&self, operation: Option<&str>, profile_arn: &str) -> u64 {
        self.calls
            .calls_where(|k| operation.is_none_or(|o| o == k.operation) && k.profile == profile_arn)
    }

    /// Counters by operation and model, summed over regions and profiles.
    pub fn counters(&self) -> BTreeMap<(String, String), CallCount> {
        self.calls.by_model()
    }

    /// Counters by operation, model, region and profile.
    pub fn detailed_counters(&self) -> BTreeMap<CallKey, CallCount> {
        self.calls.detailed()
    }

    /// Decides this call's faults, most specific first: the region's for the model, the
    /// region's `*`, the model's own, then the `*` ones.
    pub fn take_faults(&self, model: &str, region: &str) -> CallFaults {
        let roll = lock(&self.rng).unit();
        let mut faults = lock(&self.faults);
        let mut regional = lock(&self.region_faults);
        let (region_own, region_any) = regional
            .get_mut(region)
            .map(|specs| own_and_any(specs, model))
            .unwrap_or_default();
        let (own, any) = own_and_any(&mut faults, model);
        faults::decide(
            [region_own, region_any, own, any].into_iter().flatten(),
            roll,
        )
    }

    pub fn faults(&self) -> BTreeMap<String, FaultSpec> {
        lock(&self.faults).clone()
    }

    pub fn update_faults(&self, f: impl FnOnce(&mut BTreeMap<String, FaultSpec>)) {
        f(&mut lock(&self.faults));
    }

    /// Faults limited to one region, by region.
    pub fn region_faults(&self) -> RegionFaults {
        lock(&self.region_faults).clone()
    }

    /// Changes the faults of calls signed for `region` (by base model ID or `*`).
    pub fn update_region_faults(
        &self,
        region: &str,
        f: impl FnOnce(&mut BTreeMap<String, FaultSpec>),
    ) {
        let mut regional = lock(&self.region_faults);
        f(regional.entry(region.to_owned()).or_default());
    }

    /// Clears every fault, of every region.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
        lock(&self.region_faults).clear();
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

    /// Application inference profiles created through the control plane.
    pub fn profiles(&self) -> &ProfileStore {
        &self.profiles
    }

    /// Batch inference jobs and their faults.
    pub fn batch(&self) -> &JobStore {
        &self.batch
    }

    /// Forgets counters, recorded requests, the prompt cache, batch jobs and application
    /// inference profiles; faults go back to the configured ones.
    pub fn reset(&self) {
        let configured = self.config().faults.clone();
        let regional = self.config().region_faults.clone();
        let batch_faults = self.config().batch.faults.clone();
        self.batch.reset(batch_faults);
        *lock(&self.faults) = configured;
        *lock(&self.region_faults) = regional;
        self.calls.clear();
        self.profiles.clear();
        lock(&self.prompt_cache).clear();
        // Corpora are read again at their next query, picking up edited files.
        self.knowledge.clear();
    }
}
