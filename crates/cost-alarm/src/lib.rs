//! cost-alarm: runs on an EventBridge schedule and on SNS alarm notifications; compares
//! month-to-date spend with budgets and notifies. Never fails an invocation on a malformed
//! event: it logs it and carries on.

pub mod trigger;

use serde::Serialize;
use serde_json::Value;

pub use trigger::{Trigger, classify};

/// What one invocation did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub triggers: Vec<Trigger>,
}

/// Handles one invocation's event.
pub async fn handle(event: &Value) -> Summary {
    let triggers = classify(event);
    for t in &triggers {
        match t {
            Trigger::Malformed { reason } => tracing::warn!(%reason, "malformed event ignored"),
            Trigger::Unknown => tracing::warn!("unrecognised event ignored"),
            other => tracing::info!(trigger = ?other, "cost-alarm triggered"),
        }
    }
    Summary { triggers }
}
