//! Evaluation: golden sets run through the chat service under prompt versions × models,
//! scored by assertions and an optional judge model, summarised as a decision grid with a
//! gate, and saved so two runs can be compared case by case.

pub mod golden;
pub mod grid;
pub mod runner;
