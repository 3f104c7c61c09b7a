//! Quarry's operator tooling: what an operator runs against a stage, never what serves a
//! request.
//!
//! ## Overview
//!
//! The Lambdas only read configuration, prompts and tenants from the parameter store and
//! only use tables and queues that already exist. Writing them is the operator's job, done
//! through the `quarry` CLI (and by the test harness, which builds a stage the same way):
//!
//! - [`infra`]: the YAML sources in `infra/` (routing, pricing, budgets, experiments,
//!   prompts) validated and pushed to SSM, only changed values getting a new version;
//! - [`prompt_admin`]: prompt versions and labels (promote, rollback, show, diff);
//! - [`tenants`]: the tenant directory and API keys;
//! - [`provision`]: a stage's tables, queues and topics as `template.yaml` declares them
//!   (for `quarry dev` and the tests against moto).
//!
//! This crate exists so that the Lambdas do not link what only this tooling needs: YAML
//! parsing, text diffs and the resource-creating SDK calls. It builds on `quarry-aws` (the
//! SSM adapter, [`Settings`](quarry_aws::Settings), queue lookups) and never the other way
//! round.

pub mod audit;
pub mod infra;
pub mod prompt_admin;
pub mod provision;
pub mod tenants;
