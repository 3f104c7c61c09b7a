//! Per-model circuit breakers, shared by every request of a warm Lambda.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::RetryPolicy;

/// A model's circuit. Throttles are weighed against the calls *started* in the window, not
/// against the answers received: under concurrency a throttle comes back in milliseconds while
/// a success takes seconds, so counting consecutive throttles in arrival order would open the
/// circuit on any burst of a modest throttle rate and turn it into a total outage.
#[derive(Debug, Default)]
struct Breaker {
    window_start: Option<Instant>,
    started: u32,
    throttled: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn roll_window(&mut self, now: Instant, window: Duration) {
        if self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= window)
        {
            self.window_start = Some(now);
            self.started = 0;
            self.throttled = 0;
        }
    }
}

/// Per-model circuit breakers, shared by every request of a warm Lambda.
#[derive(Debug, Default)]
pub struct CircuitBreakers {
    models: Mutex<HashMap<String, Breaker>>,
}

/// Most models tracked at once. Model IDs a caller names (ARNs of any region) are valid
/// but not configured values, so the map is bounded: when full, closed breakers are dropped
/// (they hold only a window of counts).
const MAX_TRACKED: usize = 1024;

impl CircuitBreakers {
    fn with<R>(&self, model: &str, f: impl FnOnce(&mut Breaker) -> R) -> R {
        let mut models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if models.len() >= MAX_TRACKED && !models.contains_key(model) {
            models.retain(|_, b| b.open_until.is_some());
            if models.len() >= MAX_TRACKED {
                models.clear();
            }
        }
        f(models.entry(model.to_owned()).or_default())
    }

    /// Open: skip the model. After the cooldown the next call is a trial (half-open).
    pub fn is_open(&self, model: &str, now: Instant) -> bool {
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(model)
            .is_some_and(|b| b.open_until.is_some_and(|until| now < until))
    }

    /// How many models are tracked (bounded by [`MAX_TRACKED`]).
    pub fn tracked(&self) -> usize {
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// A call to `model` is about to start.
    pub(super) fn started(&self, model: &str, now: Instant, policy: &RetryPolicy) {
        self.with(model, |b| {
            b.roll_window(now, policy.breaker_window);
            b.started += 1;
        });
    }

    /// A success closes a half-open circuit.
    pub(super) fn success(&self, model: &str) {
        self.with(model, |b| b.open_until = None);
    }

    /// Returns true when this throttle opened the circuit.
    pub(super) fn throttled(&self, model: &str, now: Instant, policy: &RetryPolicy) -> bool {
        self.with(model, |b| {
            b.roll_window(now, policy.breaker_window);
            b.throttled += 1;
            if b.throttled >= policy.breaker_threshold && b.throttled * 5 >= b.started * 4 {
                b.open_until = Some(now + policy.breaker_cooldown);
                b.window_start = None;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_named_models_cannot_grow_the_map_without_bound() {
        let (b, p, now) = (
            CircuitBreakers::default(),
            RetryPolicy::default(),
            Instant::now(),
        );
        for i in 0..(3 * MAX_TRACKED) {
            let arn = format!("arn:aws:bedrock:r{i}:123456789012:inference-profile/us.m");
            b.started(&arn, now, &p);
            assert!(!b.is_open(&arn, now));
        }
        assert!(b.tracked() <= MAX_TRACKED);
        // Asking about a model tracks nothing.
        assert!(!b.is_open("never-called", now));
        assert!(b.tracked() <= MAX_TRACKED);
    }

    #[test]
    fn a_burst_of_early_throttles_among_many_calls_keeps_the_circuit_closed() {
        let (b, p, now) = (
            CircuitBreakers::default(),
            RetryPolicy::default(),
            Instant::now(),
        );
        // 50 calls in flight; the 10 throttled ones come back first.
        for _ in 0..50 {
            b.started("m", now, &p);
        }
        for _ in 0..10 {
            assert!(!b.throttled("m", now, &p));
        }
        assert!(!b.is_open("m", now));
    }

    #[test]
    fn consecutive_throttles_of_one_caller_open_it_until_the_cooldown() {
        let (b, p, now) = (
            CircuitBreakers::default(),
            RetryPolicy::default(),
            Instant::now(),
        );
        for i in 1..=p.breaker_threshold {
            b.started("m", now, &p);
            assert_eq!(b.throttled("m", now, &p), i == p.breaker_threshold);
        }
        assert!(b.is_open("m", now));
        assert!(!b.is_open("other", now));
        assert!(!b.is_open("m", now + p.breaker_cooldown));
        // Half-open: one more throttle does not reopen it at once; a success closes it.
        b.started("m", now + p.breaker_cooldown, &p);
        assert!(!b.throttled("m", now + p.breaker_cooldown, &p));
        b.success("m");
        assert!(!b.is_open("m", now + p.breaker_cooldown));
    }

    #[test]
    fn most_calls_throttled_opens_it_under_concurrency_too() {
        let (b, p, now) = (
            CircuitBreakers::default(),
            RetryPolicy::default(),
            Instant::now(),
        );
        for _ in 0..20 {
            b.started("m", now, &p);
        }
        // Half of them throttled: retries and fallback cope, the circuit stays closed.
        assert!(!(0..10).any(|_| b.throttled("m", now, &p)));
        // Nine in ten: it opens.
        let opened = (0..8).any(|_| b.throttled("m", now, &p));
        assert!(opened && b.is_open("m", now));
    }
}
