//! The retry policy: attempts per model, full-jitter backoff, the circuit breaker's
//! thresholds, and the least time an attempt may start with.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts on one model before falling back (1 = no retry).
    pub max_attempts_per_model: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No attempt starts with less time than this left.
    pub min_attempt_time: Duration,
    /// Throttles within `breaker_window` that open a model's circuit, provided they are at
    /// least four in five of the calls started in that window (so, for one request at a time
    /// as on Lambda: this many consecutive throttles). Below that, retries and fallback serve
    /// better than shedding: at 50% throttling six attempts fail together 1.6% of the time.
    pub breaker_threshold: u32,
    pub breaker_window: Duration,
    pub breaker_cooldown: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts_per_model: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            min_attempt_time: Duration::from_millis(500),
            breaker_threshold: 5,
            breaker_window: Duration::from_secs(10),
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, base * 2^retry)].
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(if ms == 0 {
            0
        } else {
            rand::random_range(0..=ms)
        })
    }
}
