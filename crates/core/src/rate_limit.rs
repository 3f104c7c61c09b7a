//! Per-tenant rate limits (requests and tokens per minute) without a hot item: leased
//! slices of sharded per-minute allowances.
//!
//! A minute's allowance of `limit` is split over up to [`RATE_SHARDS`] counters, each
//! holding its part. A warm process takes a *slice* from one shard (a conditional ADD that
//! never lets the shard pass its part) and admits requests from its slice without a write.
//! Slices start at 1 and double while the process spends them within a second (halve when
//! one lasts more than five), so a busy process writes rarely and an idle one holds little.
//!
//! Accuracy:
//! * requests per minute are never exceeded: every admitted request was leased, and the
//!   shards' parts sum to the limit;
//! * a request may be refused while other processes still hold unused slices: at most one
//!   slice each, and a slice is at most `limit / (4 × shards)`;
//! * tokens are known only after the call, so a process admits while its token slice is
//!   positive and then charges the call's tokens: the limit is exceeded by at most the
//!   tokens of one call per process (the one that overdrew its slice). The overdraft is
//!   leased back first, before the next call is admitted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::ports::{BudgetStore, StoreError};

/// Shards of a minute's allowance.
pub const RATE_SHARDS: u32 = 16;

/// Requests (`REQ`) or tokens (`TOK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Requests,
    Tokens,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Requests => "REQ",
            Kind::Tokens => "TOK",
        }
    }
}

/// The shards an allowance of `limit` is spread over, and the part of shard `k`.
pub fn parts(limit: u64) -> (u32, impl Fn(u32) -> u64) {
    let shards = u32::try_from(limit.clamp(1, u64::from(RATE_SHARDS))).unwrap_or(RATE_SHARDS);
    let base = limit / u64::from(shards);
    let extra = limit % u64::from(shards);
    (shards, move |k: u32| base + u64::from(u64::from(k) < extra))
}

/// What this process holds of one tenant's allowance in one minute.
#[derive(Debug, Clone)]
struct Slice {
    minute: i64,
    /// Left to spend; below zero: tokens overdrawn.
    left: i64,
    /// The next slice's size.
    size: u64,
    granted_at_ms: i64,
    /// Shards found spent this minute (they only fill up within a minute).
    spent: BTreeSet<u32>,
}

impl Slice {
    fn new(minute: i64) -> Self {
        Slice {
            minute,
            left: 0,
            size: 1,
            granted_at_ms: 0,
            spent: BTreeSet::new(),
        }
    }
}

/// The slices this process holds, per tenant and kind.
#[derive(Default)]
pub struct Slices {
    held: Mutex<HashMap<(String, Kind), Slice>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slices {
    /// Takes `need` (1 request; 0 tokens: only a positive balance) from this process's slice,
    /// leasing more when it runs short. Ok(false): the minute's allowance is spent.
    pub async fn take(
        &self,
        store: &dyn BudgetStore,
        tenant: &str,
        kind: Kind,
        limit: u64,
        now_ms: i64,
        need: i64,
    ) -> Result<bool, StoreError> {
        let minute = now_ms.div_euclid(60_000);
        let key = (tenant.to_owned(), kind);
        let mut slice = {
            let mut held = lock(&self.held);
            let s = held
                .entry(key.clone())
                .or_insert_with(|| Slice::new(minute));
            if s.minute != minute {
                // A new minute: what is overdrawn stays owed, the size is kept.
                let owed = s.left.min(0);
                *s = Slice {
                    left: if kind == Kind::Tokens { owed } else { 0 },
                    size: s.size,
                    ..Slice::new(minute)
                };
            }
            if s.left >= need.max(1) {
                s.left -= need;
                return Ok(true);
            }
            s.clone()
        };
        // Short: lease a slice (and what is overdrawn), outside the lock.
        let (shards, part) = parts(limit);
        let max = (limit / (4 * u64::from(shards))).max(1);
        let elapsed = now_ms.saturating_sub(slice.granted_at_ms);
        slice.size = if slice.granted_at_ms > 0 && elapsed < 1_000 {
            (slice.size * 2).min(max)
        } else if elapsed > 5_000 {
            (slice.size / 2).max(1)
        } else {
            slice.size
        }
        .min(max);
        let want = slice.size + u64::try_from(-slice.left.min(0)).unwrap_or(0);
        let start = start_shard(tenant, now_ms) % shards;
        let mut granted = 0u64;
        for i in 0..shards {
            let k = (start + i) % shards;
            if slice.spent.contains(&k) {
                continue;
            }
            let ask = want - granted;
            let got = store
                .lease(tenant, minute, kind.key(), k, ask, part(k))
                .await?;
            granted += got;
            if got < ask {
                // Less than asked: this shard's part is spent.
                slice.spent.insert(k);
            }
            if granted >= want {
                break;
            }
        }
        let mut held = lock(&self.held);
        let s = held.entry(key).or_insert_with(|| Slice::new(minute));
        if s.minute != minute {
            return Ok(false);
        }
        s.left += i64::try_from(granted).unwrap_or(i64::MAX);
        s.size = slice.size;
        s.spent.extend(slice.spent);
        if granted > 0 {
            s.granted_at_ms = now_ms;
        }
        if s.left >= need.max(1) {
            s.left -= need;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Charges tokens a call used to this process's slice (it may go below zero).
    pub fn spend(&self, tenant: &str, kind: Kind, now_ms: i64, amount: u64) {
        let minute = now_ms.div_euclid(60_000);
        let mut held = lock(&self.held);
        let s = held
            .entry((tenant.to_owned(), kind))
            .or_insert_with(|| Slice::new(minute));
        if s.minute != minute {
            let owed = s.left.min(0);
            *s = Slice {
                left: owed,
                size: s.size,
                ..Slice::new(minute)
            };
        }
        s.left = s
            .left
            .saturating_sub(i64::try_from(amount).unwrap_or(i64::MAX));
    }
}

/// Where a process starts probing: spread over processes and time, so processes lease from
/// different shards.
fn start_shard(tenant: &str, now_ms: i64) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(tenant.as_bytes());
    h.write_i64(now_ms);
    (h.finish() % u64::from(RATE_SHARDS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::MemoryBudgets;
    use proptest::prelude::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn parts_sum_to_the_limit() {
        for limit in [1, 2, 15, 16, 17, 1000, 60_001] {
            let (shards, part) = parts(limit);
            assert!((1..=RATE_SHARDS).contains(&shards));
            assert_eq!((0..shards).map(&part).sum::<u64>(), limit);
            assert!((0..shards).all(|k| part(k) >= 1));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Many processes, any order: never more requests than the limit, and a refusal
        /// only once every shard is leased to the full.
        #[test]
        fn requests_never_pass_the_limit(
            limit in 1u64..300,
            processes in 1usize..12,
            order in prop::collection::vec((0usize..12, 0i64..59_000), 1..600),
        ) {
            let store = MemoryBudgets::default();
            let slices: Vec<Slices> = (0..processes).map(|_| Slices::default()).collect();
            let mut order = order;
            order.sort_by_key(|(_, at)| *at);
            let base = 1_000 * 60_000;
            let mut admitted = 0u64;
            for (p, at) in order {
                let ok = run(slices[p % processes].take(&store, "t", Kind::Requests, limit, base + at, 1)).unwrap();
                if ok {
                    admitted += 1;
                } else {
                    let held = store.leased("t", 1_000, "REQ");
                    prop_assert_eq!(held, limit, "refused before the allowance was all leased");
                }
                prop_assert!(admitted <= limit);
            }
        }
    }

    #[test]
    fn tokens_overdrawn_are_leased_back_and_the_next_minute_owes_them() {
        let store = MemoryBudgets::default();
        let s = Slices::default();
        let t0 = 1_000 * 60_000;
        assert!(run(s.take(&store, "t", Kind::Tokens, 100, t0, 0)).unwrap());
        s.spend("t", Kind::Tokens, t0, 150);
        // 150 used of 100: refused for the rest of the minute.
        assert!(!run(s.take(&store, "t", Kind::Tokens, 100, t0 + 1, 0)).unwrap());
        assert_eq!(store.leased("t", 1_000, "TOK"), 100);
        // The next minute owes the 50 overdrawn beyond what was leased.
        assert!(run(s.take(&store, "t", Kind::Tokens, 100, t0 + 60_000, 0)).unwrap());
        assert!(store.leased("t", 1_001, "TOK") >= 51);
    }

    #[test]
    fn a_busy_process_leases_in_growing_slices() {
        let store = MemoryBudgets::default();
        let s = Slices::default();
        let t0 = 1_000 * 60_000;
        for i in 0..1_000 {
            assert!(run(s.take(&store, "t", Kind::Requests, 60_000, t0 + i, 1)).unwrap());
        }
        let leases = store.leases.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            leases < 20,
            "{leases} leases for 1,000 requests in a second"
        );
        // At most one slice beyond what was admitted.
        assert!(store.leased("t", 1_000, "REQ") <= 1_000 + 60_000 / (4 * 16));
    }
}
