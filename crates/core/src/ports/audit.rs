//! The audit trail's port.

use async_trait::async_trait;

use super::StoreError;
use crate::audit::AuditRecord;

/// Where audit records go (Firehose, then S3 under Object Lock).
#[async_trait]
pub trait AuditTrail: Send + Sync {
    /// Delivers the record, or keeps it durably for a later delivery (a spill queue that is
    /// replayed). An error means neither worked: the caller must say so, never drop it
    /// quietly.
    async fn record(&self, record: &AuditRecord) -> Result<(), StoreError>;
}

/// No audit trail (unit tests; functions that answer nothing).
pub struct NoAudit;

#[async_trait]
impl AuditTrail for NoAudit {
    async fn record(&self, _: &AuditRecord) -> Result<(), StoreError> {
        Ok(())
    }
}
