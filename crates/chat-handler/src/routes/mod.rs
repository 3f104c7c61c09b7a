//! Route handlers: thin adapters from HTTP to the chat service. Their arguments are
//! `quarry_http`'s extractors, so a handler only runs for a known caller with a bounded
//! JSON body; everything refused before that is answered by the extractors.
//!
//! ## Overview
//!
//! - [`chat`]: the flow both chat APIs share (parse, answer or stream, idempotency, the
//!   request line), over a [`chat::ChatApi`];
//! - [`native`], [`openai`] and [`anthropic`]: the chat APIs, i.e. how each reads a request
//!   and writes an answer and a stream;
//! - [`models`] and [`batches`]: reads that need no model;
//! - [`feedback`]: ratings of the caller's own answers.

pub mod anthropic;
pub mod batches;
pub mod chat;
pub mod embeddings;
pub mod feedback;
pub mod models;
pub mod native;
pub mod openai;

use std::sync::Arc;

use quarry_core::config::Configs;
use quarry_http::{ApiState, AuthMode, Timing};

use crate::state::AppState;

pub type Shared = Arc<AppState>;

impl ApiState for AppState {
    fn auth(&self) -> &AuthMode {
        &self.options.auth
    }

    fn timing(&self) -> Timing {
        Timing {
            timeout: self.options.request_timeout,
            margin: self.options.deadline_margin,
        }
    }

    fn max_body_bytes(&self) -> usize {
        self.options.max_body_bytes
    }

    fn configs(&self) -> &Configs {
        self.service.configs()
    }
}
