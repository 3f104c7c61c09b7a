//! batch-worker: SQS-driven batch inference through the shared chat pipeline, with
//! partial batch failures (only retryable failures return to the queue).

pub mod bulk;
pub mod job_mode;
pub mod message;
mod outcomes;
pub mod partial;
pub mod poller;
pub mod worker;

pub use worker::{Worker, WorkerOptions, WorkerPorts};
