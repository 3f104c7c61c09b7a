//! Invocation: one retry policy (ours), fallback along the chain, circuit breakers, and a
//! deadline the whole sequence stays inside.
//!
//! * Retryable errors (throttling, unavailable, not ready, model timeout, internal, network)
//!   are retried on the same model with exponential backoff and full jitter.
//! * When a model's retries are spent, or it fails in a way retrying cannot fix (access
//!   denied, not found, the model's own error), the next model of the chain is tried at once.
//! * A validation error stops everything: the request itself is wrong.
//! * N consecutive throttles open a model's circuit for a cooldown; while open the model is
//!   skipped without a call (per warm Lambda: the state lives in this process).
//! * No attempt starts with less than `min_attempt_time` left before the deadline, and each
//!   attempt's own timeout ends at the deadline, so a Lambda never times out mid-retry.
//! * Streams fall back only before the first token; after it, errors reach the caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::model::{
    ModelClient, ModelError, ModelErrorKind, ModelRequest, ModelResponse, ModelStream, StreamEvent,
};
use crate::routing::ModelTarget;

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
    fn backoff(&self, retry: u32) -> Duration {
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

impl CircuitBreakers {
    fn with<R>(&self, model: &str, f: impl FnOnce(&mut Breaker) -> R) -> R {
        let mut models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(models.entry(model.to_owned()).or_default())
    }

    /// Open: skip the model. After the cooldown the next call is a trial (half-open).
    pub fn is_open(&self, model: &str, now: Instant) -> bool {
        self.with(model, |b| b.open_until.is_some_and(|until| now < until))
    }

    /// A call to `model` is about to start.
    fn started(&self, model: &str, now: Instant, policy: &RetryPolicy) {
        self.with(model, |b| {
            b.roll_window(now, policy.breaker_window);
            b.started += 1;
        });
    }

    /// A success closes a half-open circuit.
    fn success(&self, model: &str) {
        self.with(model, |b| b.open_until = None);
    }

    /// Returns true when this throttle opened the circuit.
    fn throttled(&self, model: &str, now: Instant, policy: &RetryPolicy) -> bool {
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

/// What happened to one attempt, for the response's `fallbacks` and the logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AttemptOutcome {
    Success,
    Failed {
        error: ModelErrorKind,
        message: String,
    },
    /// Skipped without a call: the model's circuit is open.
    CircuitOpen,
    /// Not started: too little time left before the deadline.
    NoTimeLeft,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub model: String,
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
    pub elapsed_ms: u64,
}

/// A model given up on before the one that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fallback {
    pub model: String,
    pub reason: String,
    pub attempts: u32,
}

/// Models tried before `answered_by`, each with the reason it was left.
pub fn fallbacks(attempts: &[Attempt], answered_by: Option<&str>) -> Vec<Fallback> {
    let mut out: Vec<Fallback> = Vec::new();
    for a in attempts {
        if Some(a.model.as_str()) == answered_by {
            continue;
        }
        let reason = match &a.outcome {
            AttemptOutcome::Success => continue,
            AttemptOutcome::Failed { error, .. } => error.as_str().to_owned(),
            AttemptOutcome::CircuitOpen => "circuit_open".to_owned(),
            AttemptOutcome::NoTimeLeft => "no_time_left".to_owned(),
        };
        let calls = u32::from(matches!(a.outcome, AttemptOutcome::Failed { .. }));
        match out.iter_mut().find(|f| f.model == a.model) {
            Some(f) => {
                f.attempts += calls;
                f.reason = reason;
            }
            None => out.push(Fallback {
                model: a.model.clone(),
                reason,
                attempts: calls,
            }),
        }
    }
    out
}

/// Summarises attempts as "model (2x throttled, 1x timeout); other (circuit open)".
pub fn describe_attempts(attempts: &[Attempt]) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut notes: HashMap<&str, Vec<String>> = HashMap::new();
    for a in attempts {
        if !order.contains(&a.model.as_str()) {
            order.push(&a.model);
        }
        let note = match &a.outcome {
            AttemptOutcome::Success => "ok".to_owned(),
            AttemptOutcome::Failed { error, .. } => error.as_str().to_owned(),
            AttemptOutcome::CircuitOpen => "circuit open".to_owned(),
            AttemptOutcome::NoTimeLeft => "no time left".to_owned(),
        };
        notes.entry(&a.model).or_default().push(note);
    }
    order
        .iter()
        .map(|m| {
            let list = notes.remove(m).unwrap_or_default();
            let mut counted: Vec<(String, usize)> = Vec::new();
            for n in list {
                match counted.iter_mut().find(|(k, _)| *k == n) {
                    Some((_, c)) => *c += 1,
                    None => counted.push((n, 1)),
                }
            }
            let parts: Vec<String> = counted
                .into_iter()
                .map(|(n, c)| if c > 1 { format!("{c}x {n}") } else { n })
                .collect();
            format!("{m} ({})", parts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request is invalid for the model (no retry, no fallback).
    Rejected,
    /// Every model of the chain failed or was skipped.
    Exhausted,
    /// The time budget ran out first.
    DeadlineExceeded,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?} after {}", describe_attempts(attempts))]
pub struct InvokeFailure {
    pub kind: FailureKind,
    pub attempts: Vec<Attempt>,
    pub last_error: Option<ModelError>,
    /// The time budget the sequence had.
    pub budget: Duration,
}

impl InvokeFailure {
    /// True when at least one failure was transient (throttling, outage), so the same
    /// request may succeed later.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            FailureKind::Rejected => false,
            FailureKind::DeadlineExceeded => true,
            FailureKind::Exhausted => self.attempts.iter().any(|a| match &a.outcome {
                AttemptOutcome::Failed { error, .. } => error.is_retryable(),
                AttemptOutcome::CircuitOpen | AttemptOutcome::NoTimeLeft => true,
                AttemptOutcome::Success => false,
            }),
        }
    }

    /// True when throttling was among the reasons (batch workers stop starting new work).
    pub fn was_throttled(&self) -> bool {
        self.attempts.iter().any(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::Failed {
                    error: ModelErrorKind::Throttled,
                    ..
                } | AttemptOutcome::CircuitOpen
            )
        })
    }
}

#[derive(Debug, Clone)]
pub struct Invocation {
    pub response: ModelResponse,
    pub target: ModelTarget,
    pub attempts: Vec<Attempt>,
}

impl Invocation {
    pub fn fallbacks(&self) -> Vec<Fallback> {
        fallbacks(&self.attempts, Some(&self.target.invoke_id))
    }
}

/// A stream that has produced its first token (or ended without content).
pub struct StreamInvocation {
    pub target: ModelTarget,
    pub attempts: Vec<Attempt>,
    /// Events received up to and including the first content event.
    pub head: Vec<StreamEvent>,
    /// The rest of the stream; it ends with a timeout error at the deadline.
    pub rest: ModelStream,
}

impl StreamInvocation {
    pub fn fallbacks(&self) -> Vec<Fallback> {
        fallbacks(&self.attempts, Some(&self.target.invoke_id))
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Converse,
    Stream,
}

/// What a successful attempt produced.
enum Answered {
    Response(ModelResponse),
    Stream(Vec<StreamEvent>, ModelStream),
}

/// The request as `target` may receive it: prompt-cache checkpoints are removed for models
/// that do not support them (a fallback model may not), rather than failing validation.
pub fn request_for<'a>(
    target: &ModelTarget,
    request: &'a ModelRequest,
) -> std::borrow::Cow<'a, ModelRequest> {
    use crate::model::{ContentBlock, SystemBlock};
    let has_points = request
        .system
        .iter()
        .any(|b| matches!(b, SystemBlock::CachePoint))
        || request.messages.iter().any(|m| {
            m.content
                .iter()
                .any(|b| matches!(b, ContentBlock::CachePoint))
        });
    if target.capabilities.prompt_caching || !has_points {
        return std::borrow::Cow::Borrowed(request);
    }
    let mut stripped = request.clone();
    stripped
        .system
        .retain(|b| !matches!(b, SystemBlock::CachePoint));
    for m in &mut stripped.messages {
        m.content.retain(|b| !matches!(b, ContentBlock::CachePoint));
    }
    std::borrow::Cow::Owned(stripped)
}

/// What to do after a failed attempt.
enum AfterFailure {
    Retry(Duration),
    Fallback,
    Stop,
}

pub struct Invoker {
    client: Arc<dyn ModelClient>,
    policy: RetryPolicy,
    breakers: Arc<CircuitBreakers>,
}

impl Invoker {
    pub fn new(client: Arc<dyn ModelClient>, policy: RetryPolicy) -> Self {
        Self {
            client,
            policy,
            breakers: Arc::new(CircuitBreakers::default()),
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn breakers(&self) -> &CircuitBreakers {
        &self.breakers
    }

    fn after_failure(
        &self,
        target: &ModelTarget,
        error: &ModelError,
        attempt_no: u32,
        deadline: Instant,
    ) -> AfterFailure {
        if error.kind == ModelErrorKind::Validation {
            return AfterFailure::Stop;
        }
        if error.kind == ModelErrorKind::Throttled
            && self
                .breakers
                .throttled(&target.invoke_id, Instant::now(), &self.policy)
        {
            tracing::warn!(model = %target.invoke_id, "circuit opened after consecutive throttles");
            return AfterFailure::Fallback;
        }
        if !error.kind.is_retryable() || attempt_no + 1 >= self.policy.max_attempts_per_model {
            return AfterFailure::Fallback;
        }
        let delay = self.policy.backoff(attempt_no);
        // Waiting would leave no room for the retry: the next model is a better use of time.
        if Instant::now() + delay + self.policy.min_attempt_time > deadline {
            return AfterFailure::Fallback;
        }
        AfterFailure::Retry(delay)
    }

    fn failure(
        &self,
        kind: FailureKind,
        attempts: Vec<Attempt>,
        last_error: Option<ModelError>,
        started: Instant,
        deadline: Instant,
    ) -> InvokeFailure {
        InvokeFailure {
            kind,
            attempts,
            last_error,
            budget: deadline.saturating_duration_since(started),
        }
    }

    /// Calls the chain in order until a model answers.
    pub async fn invoke(
        &self,
        chain: &[ModelTarget],
        request: &ModelRequest,
        deadline: Instant,
    ) -> Result<Invocation, InvokeFailure> {
        let (answer, target, attempts) = self.run(chain, request, deadline, Mode::Converse).await?;
        match answer {
            Answered::Response(response) => Ok(Invocation {
                response,
                target,
                attempts,
            }),
            Answered::Stream(..) => Err(InvokeFailure {
                kind: FailureKind::Exhausted,
                attempts,
                last_error: None,
                budget: Duration::ZERO,
            }),
        }
    }

    /// Opens a stream on the first model that produces a first token; falls back only
    /// before that token.
    pub async fn invoke_stream(
        &self,
        chain: &[ModelTarget],
        request: &ModelRequest,
        deadline: Instant,
    ) -> Result<StreamInvocation, InvokeFailure> {
        let (answer, target, attempts) = self.run(chain, request, deadline, Mode::Stream).await?;
        match answer {
            Answered::Stream(head, rest) => Ok(StreamInvocation {
                target,
                attempts,
                head,
                rest: until_deadline(rest, deadline),
            }),
            Answered::Response(_) => Err(InvokeFailure {
                kind: FailureKind::Exhausted,
                attempts,
                last_error: None,
                budget: Duration::ZERO,
            }),
        }
    }

    /// One attempt on one model.
    async fn attempt(
        &self,
        mode: Mode,
        target: &ModelTarget,
        request: &ModelRequest,
        remaining: Duration,
        deadline: Instant,
    ) -> Result<Answered, ModelError> {
        // The adapter bounds the call with `remaining`; the outer timeout is the guarantee,
        // whatever the adapter does.
        let call = async {
            match mode {
                Mode::Converse => self
                    .client
                    .converse(&target.invoke_id, &request_for(target, request), remaining)
                    .await
                    .map(Answered::Response),
                Mode::Stream => self
                    .open_until_first_token(target, request, remaining)
                    .await
                    .map(|(head, rest)| Answered::Stream(head, rest)),
            }
        };
        match tokio::time::timeout_at(deadline, call).await {
            Ok(r) => r,
            Err(_) => Err(ModelError::new(
                ModelErrorKind::Timeout,
                "the attempt ran into the deadline",
            )),
        }
    }

    /// The retry, fallback, breaker and deadline loop shared by both modes.
    async fn run(
        &self,
        chain: &[ModelTarget],
        request: &ModelRequest,
        deadline: Instant,
        mode: Mode,
    ) -> Result<(Answered, ModelTarget, Vec<Attempt>), InvokeFailure> {
        let started = Instant::now();
        let mut attempts = Vec::new();
        let mut last_error = None;
        for target in chain {
            if self.breakers.is_open(&target.invoke_id, Instant::now()) {
                attempts.push(Attempt {
                    model: target.invoke_id.clone(),
                    outcome: AttemptOutcome::CircuitOpen,
                    elapsed_ms: 0,
                });
                continue;
            }
            let mut attempt_no = 0;
            loop {
                let now = Instant::now();
                let remaining = deadline.saturating_duration_since(now);
                if remaining < self.policy.min_attempt_time {
                    attempts.push(Attempt {
                        model: target.invoke_id.clone(),
                        outcome: AttemptOutcome::NoTimeLeft,
                        elapsed_ms: 0,
                    });
                    return Err(self.failure(
                        FailureKind::DeadlineExceeded,
                        attempts,
                        last_error,
                        started,
                        deadline,
                    ));
                }
                self.breakers.started(&target.invoke_id, now, &self.policy);
                let result = self
                    .attempt(mode, target, request, remaining, deadline)
                    .await;
                let elapsed_ms = now.elapsed().as_millis() as u64;
                match result {
                    Ok(answer) => {
                        self.breakers.success(&target.invoke_id);
                        attempts.push(Attempt {
                            model: target.invoke_id.clone(),
                            outcome: AttemptOutcome::Success,
                            elapsed_ms,
                        });
                        return Ok((answer, target.clone(), attempts));
                    }
                    Err(error) => {
                        tracing::info!(model = %target.invoke_id, error = error.kind.as_str(), attempt = attempt_no + 1, "model attempt failed");
                        attempts.push(Attempt {
                            model: target.invoke_id.clone(),
                            outcome: AttemptOutcome::Failed {
                                error: error.kind,
                                message: error.message.clone(),
                            },
                            elapsed_ms,
                        });
                        let next = self.after_failure(target, &error, attempt_no, deadline);
                        last_error = Some(error);
                        match next {
                            AfterFailure::Stop => {
                                return Err(self.failure(
                                    FailureKind::Rejected,
                                    attempts,
                                    last_error,
                                    started,
                                    deadline,
                                ));
                            }
                            AfterFailure::Fallback => break,
                            AfterFailure::Retry(delay) => {
                                tokio::time::sleep(delay).await;
                                attempt_no += 1;
                            }
                        }
                    }
                }
            }
        }
        let kind = if Instant::now() + self.policy.min_attempt_time > deadline {
            FailureKind::DeadlineExceeded
        } else {
            FailureKind::Exhausted
        };
        Err(self.failure(kind, attempts, last_error, started, deadline))
    }

    async fn open_until_first_token(
        &self,
        target: &ModelTarget,
        request: &ModelRequest,
        timeout: Duration,
    ) -> Result<(Vec<StreamEvent>, ModelStream), ModelError> {
        let mut stream = self
            .client
            .converse_stream(&target.invoke_id, &request_for(target, request), timeout)
            .await?;
        let mut head = Vec::new();
        while let Some(item) = stream.next().await {
            let event = item?;
            let content = event.is_content();
            head.push(event);
            if content {
                break;
            }
        }
        Ok((head, stream))
    }
}

/// Ends a stream with a timeout error when the deadline passes.
fn until_deadline(stream: ModelStream, deadline: Instant) -> ModelStream {
    Box::pin(futures::stream::unfold(
        Some(stream),
        move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(ModelError::new(
                        ModelErrorKind::Timeout,
                        "the stream ran into the deadline",
                    )),
                    None,
                )),
            }
        },
    ))
}

#[cfg(test)]
mod breaker_tests {
    use super::*;

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
