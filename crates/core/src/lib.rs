//! Quarry's domain: the model port, routing, invocation (retries, fallback, circuit
//! breakers, deadlines), pricing in integer micro-USD, tenants, and configuration read from
//! a parameter store. No AWS SDK and no Lambda crates here: adapters live in `quarry-aws`,
//! handlers in the Lambda crates.

pub mod admission;
pub mod budget;
pub mod cache;
pub mod chat;
pub mod config;
pub mod error;
pub mod guardrails;

pub mod invoke;
pub mod jobs;

pub mod model;
pub mod notify;
pub mod params;
pub mod pricing;
pub mod prompts;
pub mod routing;
pub mod service;
pub mod telemetry;
pub mod tenancy;
pub mod usage;

pub use error::Error;
