//! Where the ledger keeps things: the per-request marker and the counters' keys.
//!
//! A counter is a logical key (`T#{tenant}#M#{month}` / `TOTAL`) spread over
//! [`COUNTER_SHARDS`] items: shard 0 is the logical key itself (so counters written before
//! sharding still count), shard k > 0 is `{pk}#S{k}`. Readers sum every shard.

use chrono::{DateTime, Utc};

/// Shards per counter. Aggregations pick one per transaction, so concurrent aggregations of
/// one tenant rarely touch the same item; readers sum them all. Changing it strands the
/// shards above the new value: it is part of the table's format.
pub const COUNTER_SHARDS: u32 = 8;

/// Time buckets of a record.
pub struct Buckets {
    pub month: String,
    pub day: String,
    pub hour: String,
}

impl Buckets {
    pub fn of(at_ms: i64) -> Self {
        let t: DateTime<Utc> = DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
        Self {
            month: t.format("%Y-%m").to_string(),
            day: t.format("%Y-%m-%d").to_string(),
            hour: t.format("%Y-%m-%dT%H").to_string(),
        }
    }
}

/// The marker that makes a record count once: scoped to the tenant and hashed, so no ID
/// (whatever its length or characters) can reach another tenant's marker or DynamoDB's key
/// limits.
pub fn marker_pk(tenant: &str, id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    format!("REC#{}", hex::encode(h.finalize()))
}

/// The marker's sort key.
pub const MARKER_SK: &str = "REC";

pub fn month_pk(tenant: &str, month: &str) -> String {
    format!("T#{tenant}#M#{month}")
}

pub fn day_pk(tenant: &str, day: &str) -> String {
    format!("T#{tenant}#D#{day}")
}

pub fn hour_pk(tenant: &str, hour: &str) -> String {
    format!("T#{tenant}#H#{hour}")
}

/// The item of shard `k` of a logical counter key.
pub fn shard_pk(pk: &str, k: u32) -> String {
    if k == 0 {
        pk.to_owned()
    } else {
        format!("{pk}#S{k}")
    }
}

/// The logical key of a shard's key (`T#a#M#2026-11#S3` -> `T#a#M#2026-11`).
pub fn logical_pk(pk: &str) -> &str {
    match pk.rsplit_once("#S") {
        Some((logical, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => logical,
        _ => pk,
    }
}

/// A shard in `0..n`, different from call to call (for counters written once per request).
pub fn random_shard(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    (h.finish() % u64::from(n.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_map_back_to_their_counter() {
        let pk = month_pk("acme", "2026-11");
        assert_eq!(shard_pk(&pk, 0), pk);
        for k in 1..COUNTER_SHARDS {
            assert_eq!(logical_pk(&shard_pk(&pk, k)), pk);
        }
        // A tenant whose name looks like a shard suffix is still its own tenant.
        let odd = month_pk("x#S1", "2026-11");
        assert_eq!(logical_pk(&odd), odd);
        assert_eq!(logical_pk(&shard_pk(&odd, 3)), odd);
    }
}
