//! The budget store on DynamoDB (the usage table). The policy that reads it is
//! `quarry_core::admission::BudgetAdmission`; this file only stores.
//!
//! * `BUDGET#{tenant}` / `STATE`: the state cost-alarm writes (`ok`, `warning`,
//!   `degraded`, `blocked`), read by admission and cached briefly in the warm Lambda;
//! * `NOTICE#{tenant}` / `{key}`: one item per notification sent (a threshold crossing in a
//!   month, a runaway hour), so none is sent twice;
//! * `RATE#{tenant}#{minute}#{REQ|TOK}#{shard}` / `LEASE`: what processes leased of a
//!   minute's rate allowance, per shard (`quarry_core::rate_limit`; TTL).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use quarry_core::admission::{BudgetAdmission, month_of};
use quarry_core::budget::BudgetState;
use quarry_core::ports::{BudgetStore, Clock, Dependency, StoreError, SystemClock};

use crate::sdk::describe;

const WHAT: &str = "budget store";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn unavailable(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(e))
}

/// The current month (`2026-11`, UTC).
pub fn current_month() -> String {
    month_of(SystemClock.now_ms())
}

/// Budgets and rate limits enforced over the usage table.
pub fn admission(sdk: &SdkConfig, table: &str, max_age: Duration) -> BudgetAdmission {
    BudgetAdmission::new(
        Arc::new(DynamoBudgets::new(sdk, table)),
        Arc::new(SystemClock),
        max_age,
    )
}

#[derive(Clone)]
pub struct DynamoBudgets {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoBudgets {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        Self::with_clock(sdk, table, Arc::new(SystemClock))
    }

    pub fn with_clock(sdk: &SdkConfig, table: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.to_owned(),
            clock,
        }
    }

    /// The client and table (the reservations, stored beside the budget state).
    pub(crate) fn parts(&self) -> (&Client, &str) {
        (&self.client, &self.table)
    }
}

fn count_of(item: Option<&std::collections::HashMap<String, AttributeValue>>) -> u64 {
    item.and_then(|i| i.get("count"))
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map(|v| v.max(0) as u64)
        .unwrap_or(0)
}

#[async_trait]
impl BudgetStore for DynamoBudgets {
    async fn state(&self, tenant: &str) -> Result<Option<BudgetState>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&format!("BUDGET#{tenant}")))
            .key("sk", s("STATE"))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(raw) = out.item().and_then(|i| i.get("state")) else {
            return Ok(None);
        };
        let text = raw.as_s().map_err(|_| {
            StoreError::invalid(Dependency::DynamoDb, WHAT, "state is not a string")
        })?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::invalid(Dependency::DynamoDb, WHAT, e.to_string()))
    }

    async fn set_state(&self, tenant: &str, state: &BudgetState) -> Result<(), StoreError> {
        let json = serde_json::to_string(state)
            .map_err(|e| StoreError::invalid(Dependency::DynamoDb, WHAT, e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("BUDGET#{tenant}")))
            .item("sk", s("STATE"))
            .item("state", s(&json))
            .item("level", s(&format!("{:?}", state.level).to_lowercase()))
            .item("updated_at", n(self.clock.now_secs()))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    async fn first_notice(
        &self,
        tenant: &str,
        key: &str,
        keep: Duration,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("NOTICE#{tenant}")))
            .item("sk", s(key))
            .item(
                "expires_at",
                n(self.clock.now_secs() + keep.as_secs() as i64),
            )
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn forget_notice(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&format!("NOTICE#{tenant}")))
            .key("sk", s(key))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }

    async fn lease(
        &self,
        tenant: &str,
        minute: i64,
        kind: &str,
        shard: u32,
        want: u64,
        cap: u64,
    ) -> Result<u64, StoreError> {
        let pk = format!("RATE#{tenant}#{minute}#{kind}#{shard}");
        let mut ask = want.min(cap);
        // Asked, then what the shard has left (it may shrink meanwhile: asked again).
        for _ in 0..3 {
            if ask == 0 {
                return Ok(0);
            }
            let out = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s("LEASE"))
                .update_expression("ADD #c :n SET expires_at = :exp")
                .condition_expression("attribute_not_exists(#c) OR #c <= :room")
                .expression_attribute_names("#c", "count")
                .expression_attribute_values(":n", n(i64::try_from(ask).unwrap_or(i64::MAX)))
                .expression_attribute_values(
                    ":room",
                    n(i64::try_from(cap - ask).unwrap_or(i64::MAX)),
                )
                .expression_attribute_values(":exp", n((minute + 5) * 60))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            match out {
                Ok(_) => return Ok(ask),
                Err(e) => {
                    let Some(
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c),
                    ) = e.as_service_error()
                    else {
                        return Err(unavailable(&e));
                    };
                    let used = match c.item() {
                        Some(item) => count_of(Some(item)),
                        None => self.count(&pk).await?,
                    };
                    ask = ask.min(cap.saturating_sub(used));
                }
            }
        }
        Ok(0)
    }
}

impl DynamoBudgets {
    /// A lease counter's value.
    async fn count(&self, pk: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("LEASE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(count_of(out.item()))
    }
}
