//! Budget held for bulk jobs, in the usage table beside the ledger it counts against:
//!
//! * `HOLD#{tenant}` / `{hold}`: one item per hold (a bulk job), with its amount;
//! * `RESERVED#{tenant}` / `TOTAL`: the sum of the tenant's holds, in `cost_micro` (named as
//!   the ledger's counters are, so cost-alarm reads it as it reads spend).
//!
//! A hold and the sum change in one transaction, whose condition keeps the sum under the
//! cap: two jobs reserving at once cannot both pass a budget that fits only one.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use quarry_core::ports::{Dependency, Reservations, StoreError};
use quarry_core::pricing::MicroUsd;

use crate::budgets::DynamoBudgets;
use crate::sdk::describe;

const WHAT: &str = "budget reservations";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(e))
}

/// The item holding the sum of a tenant's holds.
pub fn reserved_pk(tenant: &str) -> String {
    format!("RESERVED#{tenant}")
}

fn micros(item: Option<&std::collections::HashMap<String, AttributeValue>>, k: &str) -> u64 {
    item.and_then(|i| i.get(k))
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(0, |v| u64::try_from(v.max(0)).unwrap_or(0))
}

/// Which of a transaction's conditions failed, by position.
fn failed_conditions<E>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        E,
    >,
) -> Option<Vec<bool>> {
    match e.as_service_error()? {
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect(),
        ),
        _ => None,
    }
}

#[async_trait]
impl Reservations for DynamoBudgets {
    async fn reserve(
        &self,
        tenant: &str,
        hold: &str,
        amount: MicroUsd,
        cap: MicroUsd,
    ) -> Result<bool, StoreError> {
        let Some(room) = cap.0.checked_sub(amount.0) else {
            return Ok(false);
        };
        let (client, table) = self.parts();
        let put = Put::builder()
            .table_name(table)
            .item("pk", s(&format!("HOLD#{tenant}")))
            .item("sk", s(hold))
            .item("amount", n(amount.0))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        let sum = Update::builder()
            .table_name(table)
            .key("pk", s(&reserved_pk(tenant)))
            .key("sk", s("TOTAL"))
            .update_expression("ADD cost_micro :a")
            .condition_expression("attribute_not_exists(cost_micro) OR cost_micro <= :room")
            .expression_attribute_values(":a", n(amount.0))
            .expression_attribute_values(":room", n(room))
            .build()
            .map_err(|e| unavailable(&e))?;
        let out = client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(sum).build())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) => match failed_conditions(&e).as_deref() {
                // Held already (a tracker that stopped after reserving): nothing to add.
                Some([true, ..]) => Ok(true),
                Some([false, true]) => Ok(false),
                _ => Err(unavailable(&e)),
            },
        }
    }

    async fn release(&self, tenant: &str, hold: &str) -> Result<(), StoreError> {
        let (client, table) = self.parts();
        let held = client
            .get_item()
            .table_name(table)
            .key("pk", s(&format!("HOLD#{tenant}")))
            .key("sk", s(hold))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(item) = held.item() else {
            return Ok(());
        };
        let amount = micros(Some(item), "amount");
        let delete = Delete::builder()
            .table_name(table)
            .key("pk", s(&format!("HOLD#{tenant}")))
            .key("sk", s(hold))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| unavailable(&e))?;
        let sum = Update::builder()
            .table_name(table)
            .key("pk", s(&reserved_pk(tenant)))
            .key("sk", s("TOTAL"))
            .update_expression("ADD cost_micro :a")
            .expression_attribute_values(":a", AttributeValue::N(format!("-{amount}")))
            .build()
            .map_err(|e| unavailable(&e))?;
        let out = client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(TransactWriteItem::builder().update(sum).build())
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Released meanwhile: once is enough.
            Err(e) if matches!(failed_conditions(&e).as_deref(), Some([true, ..])) => Ok(()),
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn reserved(&self, tenant: &str) -> Result<MicroUsd, StoreError> {
        let (client, table) = self.parts();
        let out = client
            .get_item()
            .table_name(table)
            .key("pk", s(&reserved_pk(tenant)))
            .key("sk", s("TOTAL"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(MicroUsd(micros(out.item(), "cost_micro")))
    }

    async fn spent(&self, tenant: &str, month: &str) -> Result<MicroUsd, StoreError> {
        let (client, table) = self.parts();
        let totals = crate::ledger::LedgerReader::from_client(client.clone(), table)
            .get(&crate::ledger::month_pk(tenant, month), "TOTAL")
            .await?;
        Ok(MicroUsd(totals.cost_micro))
    }
}
