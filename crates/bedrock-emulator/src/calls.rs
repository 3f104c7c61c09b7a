//! What the emulator was asked: call counters and the recorded requests, each with the region
//! the call was signed for, the X-Ray trace header it carried and, for calls through an
//! application inference profile, the profile ARN the caller named.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;

/// A poisoned lock only means another request panicked mid-update; the data is still
/// counters, so keep serving rather than fail every later call.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallCount {
    pub calls: u64,
    pub errors: u64,
}

/// One call, as it is counted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallKey {
    pub operation: String,
    /// The base model that answered (or the knowledge base, job, ... the call is about).
    pub model: String,
    pub region: String,
    /// The application inference profile ARN the call named, empty for other calls.
    pub profile: String,
}

/// Where a call came from and what it named, as it is recorded and counted.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub region: &'a str,
    /// The application inference profile ARN the call named.
    pub profile: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub seq: u64,
    pub operation: String,
    /// The model identifier as the caller sent it (an application inference profile's ARN
    /// when the call went through one).
    pub model_id: String,
    /// The region the call was signed for (the configured region when unsigned).
    pub region: String,
    /// The call's `X-Amzn-Trace-Id` header, when it carried one (omitted otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    /// The body as JSON when it is JSON, else as (lossy) text.
    pub body: serde_json::Value,
}

struct Recorded {
    seq: u64,
    operation: String,
    model_id: String,
    region: String,
    trace_header: Option<String>,
    body: Bytes,
}

/// What a recorded request was: its operation, the identifier it named, where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub operation: &'a str,
    pub model_id: &'a str,
    pub region: &'a str,
    pub trace_header: Option<&'a str>,
}

#[derive(Default)]
pub struct CallLog {
    counters: Mutex<BTreeMap<CallKey, CallCount>>,
    recorded: Mutex<VecDeque<Recorded>>,
}

impl CallLog {
    /// Keeps the request, dropping the oldest beyond `capacity`.
    pub fn record(&self, capacity: usize, seq: u64, received: Received<'_>, body: &Bytes) {
        if capacity == 0 {
            return;
        }
        let mut recorded = lock(&self.recorded);
        while recorded.len() >= capacity {
            recorded.pop_front();
        }
        recorded.push_back(Recorded {
            seq,
            operation: received.operation.to_owned(),
            model_id: received.model_id.to_owned(),
            region: received.region.to_owned(),
            trace_header: received.trace_header.map(str::to_owned),
            body: body.clone(),
        });
    }

    pub fn recorded(&self, limit: usize) -> Vec<RecordedRequest> {
        let recorded = lock(&self.recorded);
        let skip = recorded.len().saturating_sub(limit);
        recorded
            .iter()
            .skip(skip)
            .map(|r| RecordedRequest {
                seq: r.seq,
                operation: r.operation.clone(),
                model_id: r.model_id.clone(),
                region: r.region.clone(),
                trace_header: r.trace_header.clone(),
                body: serde_json::from_slice(&r.body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&r.body).into())
                }),
            })
            .collect()
    }

    pub fn clear_recorded(&self) -> usize {
        let mut recorded = lock(&self.recorded);
        let n = recorded.len();
        recorded.clear();
        n
    }

    pub fn count(&self, operation: &str, model: &str, caller: Caller<'_>, error: bool) {
        let key = CallKey {
            operation: operation.to_owned(),
            model: model.to_owned(),
            region: caller.region.to_owned(),
            profile: caller.profile.unwrap_or_default().to_owned(),
        };
        let mut counters = lock(&self.counters);
        let entry = counters.entry(key).or_default();
        entry.calls += 1;
        if error {
            entry.errors += 1;
        }
    }

    /// Calls whose key passes `keep`.
    pub fn calls_where(&self, keep: impl Fn(&CallKey) -> bool) -> u64 {
        lock(&self.counters)
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, c)| c.calls)
            .sum()
    }

    /// Every counter, by operation, model, region and profile.
    pub fn detailed(&self) -> BTreeMap<CallKey, CallCount> {
        lock(&self.counters).clone()
    }

    /// Counters by operation and model, over every region and profile.
    pub fn by_model(&self) -> BTreeMap<(String, String), CallCount> {
        let mut out: BTreeMap<(String, String), CallCount> = BTreeMap::new();
        for (key, count) in lock(&self.counters).iter() {
            let entry = out
                .entry((key.operation.clone(), key.model.clone()))
                .or_default();
            entry.calls += count.calls;
            entry.errors += count.errors;
        }
        out
    }

    pub fn clear(&self) {
        lock(&self.counters).clear();
        lock(&self.recorded).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_over_regions_and_profiles() {
        let log = CallLog::default();
        let east = Caller {
            region: "us-east-1",
            profile: None,
        };
        let west = Caller {
            region: "us-west-2",
            profile: Some("arn:p"),
        };
        log.count("Converse", "m", east, false);
        log.count("Converse", "m", west, true);
        log.count("Converse", "m", west, false);
        let all = log.by_model()[&("Converse".to_owned(), "m".to_owned())];
        assert_eq!((all.calls, all.errors), (3, 1));
        assert_eq!(log.calls_where(|k| k.region == "us-west-2"), 2);
        assert_eq!(log.calls_where(|k| k.profile == "arn:p"), 2);
    }

    #[test]
    fn recordings_keep_the_region_and_drop_the_oldest() {
        let log = CallLog::default();
        for seq in 0..3 {
            let received = Received {
                operation: "Converse",
                model_id: "m",
                region: "eu-west-1",
                trace_header: (seq == 2).then_some("Root=1-5759e988-bd862e3fe1be46a994272793"),
            };
            log.record(2, seq, received, &Bytes::from("{}"));
        }
        let r = log.recorded(10);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].seq, 1);
        assert_eq!(r[1].region, "eu-west-1");
        assert_eq!(r[0].trace_header, None);
        assert_eq!(
            r[1].trace_header.as_deref(),
            Some("Root=1-5759e988-bd862e3fe1be46a994272793")
        );
        // Without a header the field is left out: the admin API's shape is unchanged.
        let json = serde_json::to_value(&r[0]).unwrap();
        assert!(json.get("trace_header").is_none(), "{json}");
    }
}
