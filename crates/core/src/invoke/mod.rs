//! Invocation: one retry policy (ours), fallback along the chain, circuit breakers, and a
//! deadline the whole sequence stays inside.
//!
//! * Retryable errors (throttling, unavailable, not ready, model timeout, internal, network)
//!   are retried on the same model with exponential backoff and full jitter.
//! * When a model's retries are spent, or it fails in a way retrying cannot fix (access
//!   denied, not found, the model's own error), the next model of the chain is tried at once.
//! * A validation error stops everything (the request itself is wrong), unless Bedrock says
//!   it is this model's limit (context window, a capability): then the next model is tried.
//! * N consecutive throttles open a model's circuit for a cooldown; while open the model is
//!   skipped without a call (per warm Lambda: the state lives in this process).
//! * No attempt starts with less than `min_attempt_time` left before the deadline, and each
//!   attempt's own timeout ends at the deadline, so a Lambda never times out mid-retry.
//! * Streams fall back only before the first token; after it, errors reach the caller.
//! * A flex-tier call that is throttled or times out is retried at once at the standard
//!   tier (same model, no backoff), and the rest of the invocation stays standard: flex is
//!   spare capacity, so its shortage says nothing about the model.
//! * Every call is a span of its own ([`crate::trace::attempt`], numbered within the
//!   request); a stream's span lasts until the stream ends, so it carries the usage.

mod attempts;
mod breaker;
mod per_model;
mod policy;
mod traced;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, Span};

pub use self::attempts::{
    Attempt, AttemptOutcome, FailureKind, Fallback, InvokeFailure, describe_attempts, fallbacks,
};
pub use self::breaker::CircuitBreakers;
pub use self::per_model::request_for;
pub use self::policy::RetryPolicy;
use crate::model::{
    ModelError, ModelErrorKind, ModelRequest, ModelResponse, ModelStream, ServiceTier, StreamEvent,
};
use crate::ports::ModelClient;
use crate::routing::ModelTarget;

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
    /// The head, the rest, and the attempt's span (it ends with the stream).
    Stream(Vec<StreamEvent>, ModelStream, Span),
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
            // The request is wrong for every model, unless it was this model's limits
            // (its context window, a capability it lacks): the next model may take it.
            return if error.is_model_limit() {
                AfterFailure::Fallback
            } else {
                AfterFailure::Stop
            };
        }
        if error.kind == ModelErrorKind::Throttled
            && self
                .breakers
                .throttled(&target.key(), Instant::now(), &self.policy)
        {
            tracing::warn!(model = %target.invoke_id, region = target.region.as_deref(), "circuit opened after consecutive throttles");
            return AfterFailure::Fallback;
        }
        // A provisioned model that throttles is at its capacity: the overflow goes to the
        // next target at once, without waiting for capacity to free up.
        if error.kind == ModelErrorKind::Throttled
            && crate::routing::is_provisioned(&target.invoke_id)
        {
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
            Answered::Stream(head, rest, span) => Ok(StreamInvocation {
                target,
                attempts,
                head,
                // Outermost, so the span sees the deadline's cut too.
                rest: traced::until_end(until_deadline(rest, deadline), span),
            }),
            Answered::Response(_) => Err(InvokeFailure {
                kind: FailureKind::Exhausted,
                attempts,
                last_error: None,
                budget: Duration::ZERO,
            }),
        }
    }

    /// One attempt on one model, the `number`th call of the request, in a span of its own.
    async fn attempt(
        &self,
        mode: Mode,
        target: &ModelTarget,
        request: &ModelRequest,
        remaining: Duration,
        deadline: Instant,
        number: u32,
    ) -> Result<Answered, ModelError> {
        let request = request_for(target, request);
        let span = crate::trace::attempt(target, &request, number);
        // The adapter bounds the call with `remaining`; the outer timeout is the guarantee,
        // whatever the adapter does.
        let call = async {
            match mode {
                Mode::Converse => self
                    .client
                    .converse(&target.invoke_id, &request, remaining)
                    .await
                    .map(Answered::Response),
                Mode::Stream => self
                    .open_until_first_token(target, &request, remaining)
                    .await
                    .map(|(head, rest)| Answered::Stream(head, rest, Span::none())),
            }
        };
        let result = match tokio::time::timeout_at(deadline, call)
            .instrument(span.clone())
            .await
        {
            Ok(r) => r,
            Err(_) => Err(ModelError::new(
                ModelErrorKind::Timeout,
                "the attempt ran into the deadline",
            )),
        };
        match result {
            Ok(Answered::Response(r)) => {
                crate::trace::answered(&span, &target.invoke_id, &r.usage, &r.stop_reason);
                Ok(Answered::Response(r))
            }
            Ok(Answered::Stream(head, rest, _)) => {
                span.record("gen_ai.response.model", target.invoke_id.as_str());
                Ok(Answered::Stream(head, rest, span))
            }
            Err(e) => {
                crate::trace::failed(&span, e.kind.as_str());
                Err(e)
            }
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
        // Flex capacity is Bedrock's to give: once a flex call is throttled or times out,
        // the rest of the invocation runs at the standard tier.
        let mut request = std::borrow::Cow::Borrowed(request);
        let mut attempts = Vec::new();
        let mut last_error = None;
        // Calls made so far (skipped models are not calls): numbers the attempts' spans.
        let mut calls = 0;
        for target in chain {
            if self.breakers.is_open(&target.key(), Instant::now()) {
                attempts.push(Attempt {
                    model: target.invoke_id.clone(),
                    region: target.region.clone(),
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
                        region: target.region.clone(),
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
                self.breakers.started(&target.key(), now, &self.policy);
                calls += 1;
                let result = self
                    .attempt(mode, target, &request, remaining, deadline, calls)
                    .await;
                let elapsed_ms = now.elapsed().as_millis() as u64;
                match result {
                    Ok(answer) => {
                        self.breakers.success(&target.key());
                        attempts.push(Attempt {
                            model: target.invoke_id.clone(),
                            region: target.region.clone(),
                            outcome: AttemptOutcome::Success,
                            elapsed_ms,
                        });
                        return Ok((answer, target.clone(), attempts));
                    }
                    Err(error) => {
                        tracing::info!(model = %target.invoke_id, region = target.region.as_deref(), error = error.kind.as_str(), attempt = attempt_no + 1, "model attempt failed");
                        attempts.push(Attempt {
                            model: target.invoke_id.clone(),
                            region: target.region.clone(),
                            outcome: AttemptOutcome::Failed {
                                error: error.kind,
                                message: error.message.clone(),
                            },
                            elapsed_ms,
                        });
                        if request.service_tier == Some(ServiceTier::Flex)
                            && target.capabilities.serves_tier(ServiceTier::Flex)
                            && matches!(
                                error.kind,
                                ModelErrorKind::Throttled | ModelErrorKind::Timeout
                            )
                        {
                            // Straight away, on the same model: standard capacity is not
                            // what was short, so no backoff and no breaker count.
                            tracing::info!(model = %target.invoke_id, error = error.kind.as_str(), "flex tier unavailable; retrying at the standard tier");
                            request.to_mut().service_tier = None;
                            last_error = Some(error);
                            continue;
                        }
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

    /// `request` is already in the target's terms ([`request_for`]).
    async fn open_until_first_token(
        &self,
        target: &ModelTarget,
        request: &ModelRequest,
        timeout: Duration,
    ) -> Result<(Vec<StreamEvent>, ModelStream), ModelError> {
        let mut stream = self
            .client
            .converse_stream(&target.invoke_id, request, timeout)
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
