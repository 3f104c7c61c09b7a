//! Per-request facts: the request ID and the deadline.
//!
//! Behind API Gateway, lambda_http puts the Lambda context (with its deadline) and the API
//! Gateway request context (with its request ID) into the request's extensions; under
//! `quarry dev` neither exists, and the configured request timeout applies.

use std::time::{Duration, SystemTime};

use http::request::Parts;
use lambda_http::request::RequestContext;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub deadline: Instant,
    /// The X-Ray trace header, when the request carries one.
    pub trace_id: Option<String>,
    pub started: Instant,
}

impl RequestMeta {
    /// `timeout` applies when there is no Lambda deadline; `margin` is kept back from a
    /// Lambda deadline so the answer (or a clean error) leaves before the function times out.
    pub fn from_parts(parts: &Parts, timeout: Duration, margin: Duration) -> Self {
        let started = Instant::now();
        let request_id = match parts.extensions.get::<RequestContext>() {
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
        let lambda_remaining = parts
            .extensions
            .get::<lambda_http::Context>()
            .filter(|c| c.deadline > 0)
            .map(|c| {
                c.deadline()
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
        let budget = match lambda_remaining {
            Some(remaining) => remaining.saturating_sub(margin).min(timeout),
            None => timeout,
        };
        let trace_id = parts
            .headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                parts
                    .extensions
                    .get::<lambda_http::Context>()
                    .and_then(|c| c.xray_trace_id.clone())
            });
        Self {
            request_id,
            deadline: started + budget,
            trace_id,
            started,
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}
