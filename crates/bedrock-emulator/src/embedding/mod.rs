//! Embedding models (`kind: embedding`): each model's body checked against its schema
//! ([`schema`]) and answered with deterministic vectors ([`vectors`]).

pub mod schema;
pub mod vectors;
