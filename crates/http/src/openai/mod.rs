//! The OpenAI Chat Completions API (`POST /v1/chat/completions`, `GET /v1/models`), so the
//! official clients work unmodified. `model` may be a tier, a Bedrock model ID or an
//! inference profile.
//!
//! [`request`] reads what the clients send and turns it into Quarry's chat input;
//! [`response`] is what they parse back: whole answers, stream chunks, the model list.

pub mod content;
pub mod fields;
pub mod legacy;
pub mod request;
pub mod response;

pub use request::{CompletionRequest, Parsed};
pub use response::{
    Chunk, ChunkHead, Completion, Delta, Extras, ModelEntry, ModelList, completion_id,
    finish_reason, now_secs, thinking_blocks, tier_name,
};
