//! Quarry's domain: everything between a request that passed authentication and the answer,
//! with no AWS SDK and no Lambda crate. Adapters of the ports live in `quarry-aws`; handlers
//! in the Lambda crates.
//!
//! ## Overview
//!
//! * [`ports`]: every port trait, and [`ports::StoreError`], the one way a dependency fails.
//! * [`chat`]: a request from any API prepared for the model (prompt, render, one routing
//!   snapshot, tenant policy).
//! * [`service`]: the answer pipeline ([`ChatService`]), one path for streamed and whole
//!   answers.
//! * [`retrieval`]: Knowledge Base retrieval, sources, citations and the grounding check.
//! * [`bulk`]: Bedrock batch inference jobs and their files.
//! * [`invoke`]: retries, fallback, circuit breakers and the deadline.
//! * [`admission`]: budget and rate-limit policy over the budget-store port.
//! * Configuration and its types: [`config`], [`params`], [`routing`], [`pricing`],
//!   [`prompts`], [`tenancy`], [`budget`], [`guardrails`]; records: [`usage`], [`jobs`],
//!   [`cache`]; [`telemetry`] for metrics, [`trace`] for the request's spans.

pub mod admission;
pub mod audit;
pub mod budget;
pub mod bulk;
pub mod cache;
pub mod chat;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod feedback;
pub mod guardrails;
pub mod invoke;
pub mod jobs;
pub mod media;
pub mod model;
pub mod needs;
pub mod params;
pub mod ports;
pub mod pricing;
pub mod prompts;
pub mod rate_limit;
pub mod retrieval;
pub mod routing;
pub mod service;
pub mod telemetry;
pub mod tenancy;
pub mod trace;
pub mod usage;

pub use chat::{ChatInput, Prepared, Preparer};
pub use error::Error;
pub use service::{Answer, AnswerRequest, AnswerStream, CacheMode, ChatService, StreamItem};
