//! HTTP plumbing shared by the API Lambdas (chat-handler, cache-lookup): who is calling,
//! the error envelope, JSON bodies that name the field at fault, request IDs and deadlines,
//! and the wire types of each API. The same code runs behind API Gateway (through
//! lambda_http) and under `quarry dev`.
//!
//! Handlers take [`extract`]'s extractors, whose rejection is the envelope ([`error`]), so
//! they only ever see a known caller and a bounded JSON body; the router ([`routes`]) gives
//! its own 404 and 405 the same envelope.

pub mod anthropic;
pub mod auth;
pub mod batches;
pub mod body;
pub mod context;
pub mod embeddings;
pub mod error;
pub mod extract;
pub mod native;
pub mod openai;
pub mod routes;
pub mod sources;

pub use auth::{AuthMode, Credential, authenticate};
pub use body::parse_json;
pub use context::{RequestId, RequestMeta, Timing};
pub use error::{ApiError, Envelope, Refused, Rejection};
pub use extract::{AcceptOptions, ApiState, Caller, JsonBody, WithEnvelope};
