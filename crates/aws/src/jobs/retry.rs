//! Items a fixable cause failed (a budget): their message is kept with the failed item, and
//! `quarry batch retry` puts the item back to `retry` (its failure uncounted) and sends the
//! message again.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use quarry_core::jobs::{ItemRef, JobError};

use super::{DynamoJobs, cancelled_by_condition, get_s, n, s, store};

impl DynamoJobs {
    pub(super) async fn keep_message(&self, item: &ItemRef, body: &str) -> Result<(), JobError> {
        let (pk, sk) = Self::item_key(item);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET retry_body = :body")
            .condition_expression("#s = :failed")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":body", s(body))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Not failed (any more): nothing to keep.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(store(&e)),
        }
    }

    pub(super) async fn reopen_failed(&self, item: &ItemRef) -> Result<Option<String>, JobError> {
        let (pk, sk) = Self::item_key(item);
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk.clone())
            .key("sk", sk.clone())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store(&e))?;
        let Some(body) = found
            .item()
            .filter(|i| get_s(i, "status").as_deref() == Some("failed"))
            .and_then(|i| get_s(i, "retry_body"))
        else {
            return Ok(None);
        };
        // Back to `retry` (claimable, as a released item is), its failure uncounted.
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", pk)
            .key("sk", sk)
            .update_expression("SET #s = :retry, updated_at = :now REMOVE #why")
            .condition_expression("#s = :failed AND attribute_exists(retry_body)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#why", "reason")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":retry", s("retry"))
            .expression_attribute_values(":now", n(self.clock.now_ms()))
            .build()
            .map_err(|e| store(&e))?;
        let out = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(self.header(&item.tenant, &item.job_id, &[("failed", -1)])?)
            .send()
            .await;
        match out {
            Ok(_) => Ok(Some(body)),
            Err(e) if cancelled_by_condition(&e) => Ok(None),
            Err(e) => Err(store(&e)),
        }
    }
}
