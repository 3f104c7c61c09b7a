//! The OpenAI Chat Completions API (`POST /v1/chat/completions`, `GET /v1/models`), so the
//! official clients work unmodified. `model` may be a tier, a Bedrock model ID or an
//! inference profile.
//!
//! [`request`] reads what the clients send and turns it into Quarry's chat input, with
//! [`content`] (text, images, files, reasoning sent back), [`fields`] (every other field:
//! honoured or refused by name) and [`legacy`] (function calling before tools);
//! [`response`] and [`chunk`] are what they parse back: whole answers, stream chunks, the
//! model list.

pub mod chunk;
pub mod content;
pub mod fields;
pub mod legacy;
pub mod request;
pub mod response;

pub use chunk::{Chunk, ChunkHead, Delta};
pub use request::{CompletionRequest, Parsed};
pub use response::{
    Completion, Extras, ModelEntry, ModelList, completion_id, finish_reason, now_secs,
    thinking_blocks, tier_name,
};
