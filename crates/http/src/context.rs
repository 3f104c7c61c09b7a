//! Per-request facts: the request ID and the deadline.
//!
//! Behind API Gateway, lambda_http puts the Lambda context (with its deadline) and the API
//! Gateway request context (with its request ID) into the request's extensions; under
//! `quarry dev` neither exists, and the configured request timeout applies.
//!
//! Both are fixed the first time anything asks and kept in the request's extensions, so the
//! layers, extractors, handler, log line and error envelope of one request all name the same
//! ID and count from the same start.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::extract::FromRequestParts;
use http::request::Parts;
use lambda_http::request::RequestContext;
use tokio::time::Instant;

use crate::extract::ApiState;

/// How long a request may take: `timeout` applies when there is no Lambda deadline; `margin`
/// is kept back from a Lambda deadline so the answer (or a clean error) leaves before the
/// function times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub timeout: Duration,
    pub margin: Duration,
}

/// The request's ID: API Gateway's, else the caller's `x-request-id` (up to 128 bytes), else
/// a new UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The ID of the request these parts belong to.
    pub fn of(parts: &mut Parts) -> String {
        if let Some(RequestId(id)) = parts.extensions.get::<RequestId>() {
            return id.clone();
        }
        let id = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
            _ => None,
        }
        .or_else(|| {
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() <= 128)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        parts.extensions.insert(RequestId(id.clone()));
        id
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(Self::of(parts)))
    }
}

#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The correlation label (echoed, logged): may be the caller's.
    pub request_id: String,
    /// What the ledger counts this request's usage under: API Gateway's request ID, else a
    /// new UUID; never a value the caller chose, so no caller can make its usage collide
    /// with another record and go uncounted.
    pub usage_id: String,
    pub deadline: Instant,
    /// The X-Ray trace header, when the request carries one.
    pub trace_id: Option<String>,
    pub started: Instant,
}

impl RequestMeta {
    /// The facts of the request these parts belong to.
    pub fn of(parts: &mut Parts, timing: Timing) -> Self {
        if let Some(meta) = parts.extensions.get::<RequestMeta>() {
            return meta.clone();
        }
        let started = Instant::now();
        let request_id = RequestId::of(parts);
        // The request ID when Quarry (or API Gateway) chose it, so the ID a client is given
        // names its usage record, audit record and feedback; a new one when the caller
        // chose it (`x-request-id`).
        let chosen_by_caller = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == request_id);
        let usage_id = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
            _ => None,
        }
        .or_else(|| (!chosen_by_caller).then(|| request_id.clone()))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let lambda = parts
            .extensions
            .get::<lambda_http::Context>()
            .filter(|c| c.deadline > 0);
        let budget = match lambda {
            Some(c) => c
                .deadline()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .saturating_sub(timing.margin)
                .min(timing.timeout),
            None => timing.timeout,
        };
        let trace_id = parts
            .headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| lambda.and_then(|c| c.xray_trace_id.clone()));
        let meta = Self {
            request_id,
            usage_id,
            deadline: started + budget,
            trace_id,
            started,
        };
        parts.extensions.insert(meta.clone());
        meta
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

impl<S: ApiState> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Self::of(parts, state.timing()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request_id: Option<&str>) -> Parts {
        let mut r = http::Request::builder();
        if let Some(id) = request_id {
            r = r.header("x-request-id", id);
        }
        r.body(()).unwrap().into_parts().0
    }

    const TIMING: Timing = Timing {
        timeout: Duration::from_secs(10),
        margin: Duration::from_secs(1),
    };

    #[test]
    fn one_id_and_one_start_per_request() {
        let mut p = parts(None);
        let id = RequestId::of(&mut p);
        let meta = RequestMeta::of(&mut p, TIMING);
        assert_eq!(meta.request_id, id);
        let again = RequestMeta::of(&mut p, TIMING);
        assert_eq!(again.started, meta.started);
        assert_ne!(RequestId::of(&mut parts(None)), id);
    }

    #[test]
    fn the_callers_id_when_short_enough() {
        assert_eq!(RequestId::of(&mut parts(Some("abc"))), "abc");
        let long = "x".repeat(129);
        assert_ne!(RequestId::of(&mut parts(Some(&long))), long);
    }

    #[test]
    fn without_a_lambda_deadline_the_timeout_applies() {
        let meta = RequestMeta::of(&mut parts(None), TIMING);
        assert_eq!(meta.deadline - meta.started, TIMING.timeout);
    }
}
