//! Evaluation: golden sets run through the chat service under prompt versions × models,
//! scored by assertions and an optional judge model, summarised as a decision grid with a
//! gate, and saved so two runs can be compared case by case.
//!
//! ## Overview
//!
//! - [`golden`]: golden sets (JSONL cases with their inputs and assertions) and scoring;
//! - [`runner`]: runs a set against each combination through
//!   [`ChatService`](quarry_core::service::ChatService), with the same routing, retries,
//!   pricing and ledger as production traffic;
//! - [`grid`]: the decision grid, the gate, the cheapest passing combination, and the
//!   comparison of two saved runs.
//!
//! Evaluation is an offline, operator-side activity (`quarry eval`, `quarry prompts
//! promote --gate`), so it lives outside the domain crate: `quarry-core` stays what serves a
//! request, and the Lambdas do not link assertion engines they never run. This crate uses
//! only `quarry-core`'s public API.

pub mod golden;
pub mod grid;
pub mod runner;
