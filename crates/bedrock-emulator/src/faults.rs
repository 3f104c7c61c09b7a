//! Fault injection, per base model (or `*` for every model), for every region or for calls
//! signed for one region only.
//!
//! Faults are decided once per call, before any output, except the mid-stream error which
//! fires inside a stream after a given number of content deltas.

use crate::output::StopReason;
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

/// The faults of one model. Counters (`*_next`) are consumed by calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// The next N calls fail with ThrottlingException.
    pub throttle_next: u32,
    /// Each call fails with ThrottlingException with this probability (0..=1).
    pub throttle_probability: f64,
    /// The next `count` calls fail with `kind`.
    pub error_next: Option<ErrorNext>,
    /// Every call fails with this error until cleared (an outage).
    pub outage: Option<ErrorKind>,
    /// Extra delay before the first token, in milliseconds.
    pub slow_ms: u64,
    /// Streams fail with an exception event after this many content deltas (after HTTP 200).
    pub mid_stream_error_after: Option<u32>,
    /// The exception sent mid-stream (default ModelStreamErrorException).
    pub mid_stream_error: Option<ErrorKind>,
    /// The next N calls return output that ignores the requested structure: a tool input or
    /// JSON output that does not validate against its schema.
    pub malformed_output_next: u32,
    /// Every answer ends with this stop reason until cleared (Bedrock's rarer ones:
    /// `content_filtered`, `malformed_model_output`, `malformed_tool_use`,
    /// `model_context_window_exceeded`).
    pub stop_reason: Option<StopReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorNext {
    pub kind: ErrorKind,
    pub count: u32,
}

/// What the fault state decided for one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFaults {
    /// Fail the call at once with this error.
    pub fail: Option<ErrorKind>,
    pub extra_delay_ms: u64,
    pub mid_stream: Option<(u32, ErrorKind)>,
    pub malformed_output: bool,
    pub stop_reason: Option<StopReason>,
}

impl FaultSpec {
    /// Decides the faults of one call and consumes the counters it used.
    /// `roll` is a uniform number in [0, 1) for the probabilistic throttle.
    pub fn take(&mut self, roll: f64) -> CallFaults {
        let mut faults = CallFaults {
            extra_delay_ms: self.slow_ms,
            mid_stream: self.mid_stream_error_after.map(|after| {
                (
                    after,
                    self.mid_stream_error
                        .unwrap_or(ErrorKind::ModelStreamErrorException),
                )
            }),
            stop_reason: self.stop_reason,
            ..CallFaults::default()
        };
        if let Some(kind) = self.outage {
            faults.fail = Some(kind);
        } else if self.throttle_next > 0 {
            self.throttle_next -= 1;
            faults.fail = Some(ErrorKind::ThrottlingException);
        } else if let Some(next) = self.error_next.as_mut().filter(|n| n.count > 0) {
            next.count -= 1;
            faults.fail = Some(next.kind);
        } else if self.throttle_probability > 0.0 && roll < self.throttle_probability {
            faults.fail = Some(ErrorKind::ThrottlingException);
        }
        if faults.fail.is_none() && self.malformed_output_next > 0 {
            self.malformed_output_next -= 1;
            faults.malformed_output = true;
        }
        faults
    }

    /// Merges a partial update: fields set in `update` replace these.
    pub fn merge(&mut self, update: FaultUpdate) {
        if let Some(v) = update.throttle_next {
            self.throttle_next = v;
        }
        if let Some(v) = update.throttle_probability {
            self.throttle_probability = v.clamp(0.0, 1.0);
        }
        if let Some(v) = update.error_next {
            self.error_next = v;
        }
        if let Some(v) = update.outage {
            self.outage = v;
        }
        if let Some(v) = update.slow_ms {
            self.slow_ms = v;
        }
        if let Some(v) = update.mid_stream_error_after {
            self.mid_stream_error_after = v;
        }
        if let Some(v) = update.mid_stream_error {
            self.mid_stream_error = v;
        }
        if let Some(v) = update.malformed_output_next {
            self.malformed_output_next = v;
        }
        if let Some(v) = update.stop_reason {
            self.stop_reason = v;
        }
    }
}

/// Decides one call's faults from the specs that apply to it, most specific first. The
/// first spec that fails the call ends the walk (later ones keep their counters); delays
/// add up, and the first mid-stream error and stop reason win.
pub fn decide<'a>(specs: impl IntoIterator<Item = &'a mut FaultSpec>, roll: f64) -> CallFaults {
    let mut decided = CallFaults::default();
    for spec in specs {
        let faults = spec.take(roll);
        decided.extra_delay_ms += faults.extra_delay_ms;
        decided.mid_stream = decided.mid_stream.or(faults.mid_stream);
        decided.malformed_output |= faults.malformed_output;
        decided.stop_reason = decided.stop_reason.or(faults.stop_reason);
        if faults.fail.is_some() {
            decided.fail = faults.fail;
            break;
        }
    }
    decided
}

/// A partial fault update from the admin API: absent fields keep their value,
/// `null` clears an optional one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    /// Base model ID, or `*` (the default) for every model.
    #[serde(default)]
    pub model: Option<String>,
    /// Only calls signed for this region meet the faults; every region when absent.
    #[serde(default)]
    pub region: Option<String>,
    pub throttle_next: Option<u32>,
    pub throttle_probability: Option<f64>,
    #[serde(default, with = "double_option")]
    pub error_next: Option<Option<ErrorNext>>,
    #[serde(default, with = "double_option")]
    pub outage: Option<Option<ErrorKind>>,
    pub slow_ms: Option<u64>,
    #[serde(default, with = "double_option")]
    pub mid_stream_error_after: Option<Option<u32>>,
    #[serde(default, with = "double_option")]
    pub mid_stream_error: Option<Option<ErrorKind>>,
    #[serde(default, with = "double_option")]
    pub stop_reason: Option<Option<StopReason>>,
    pub malformed_output_next: Option<u32>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_next_is_consumed() {
        let mut spec = FaultSpec {
            throttle_next: 2,
            ..FaultSpec::default()
        };
        assert_eq!(spec.take(0.5).fail, Some(ErrorKind::ThrottlingException));
        assert_eq!(spec.take(0.5).fail, Some(ErrorKind::ThrottlingException));
        assert_eq!(spec.take(0.5).fail, None);
    }

    #[test]
    fn outage_wins_and_is_not_consumed() {
        let mut spec = FaultSpec {
            outage: Some(ErrorKind::ServiceUnavailableException),
            throttle_next: 1,
            ..FaultSpec::default()
        };
        for _ in 0..3 {
            assert_eq!(
                spec.take(0.9).fail,
                Some(ErrorKind::ServiceUnavailableException)
            );
        }
        assert_eq!(spec.throttle_next, 1);
    }

    #[test]
    fn probability_uses_the_roll() {
        let mut spec = FaultSpec {
            throttle_probability: 0.3,
            ..FaultSpec::default()
        };
        assert_eq!(spec.take(0.29).fail, Some(ErrorKind::ThrottlingException));
        assert_eq!(spec.take(0.31).fail, None);
    }

    #[test]
    fn the_first_failing_spec_ends_the_walk_and_delays_add_up() {
        let mut regional = FaultSpec {
            slow_ms: 5,
            ..FaultSpec::default()
        };
        let mut own = FaultSpec {
            throttle_next: 1,
            slow_ms: 7,
            ..FaultSpec::default()
        };
        let mut any = FaultSpec {
            throttle_next: 1,
            ..FaultSpec::default()
        };
        let f = decide([&mut regional, &mut own, &mut any], 0.5);
        assert_eq!(f.fail, Some(ErrorKind::ThrottlingException));
        assert_eq!(f.extra_delay_ms, 12);
        assert_eq!(any.throttle_next, 1);
        let f = decide([&mut regional, &mut own, &mut any], 0.5);
        assert_eq!(f.fail, Some(ErrorKind::ThrottlingException));
        assert_eq!(any.throttle_next, 0);
    }

    #[test]
    fn update_null_clears_and_absent_keeps() {
        let mut spec = FaultSpec {
            outage: Some(ErrorKind::InternalServerException),
            slow_ms: 7,
            ..FaultSpec::default()
        };
        let update: FaultUpdate = serde_json::from_str(r#"{"outage": null}"#).unwrap();
        spec.merge(update);
        assert_eq!(spec.outage, None);
        assert_eq!(spec.slow_ms, 7);
    }
}
