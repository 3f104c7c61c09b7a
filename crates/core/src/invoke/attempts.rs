//! What happened on the way to an answer: each attempt, the models given up on, and the
//! failure when no model answered.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::model::{ModelError, ModelErrorKind};

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
    /// The region it was called in, when the route named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
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
