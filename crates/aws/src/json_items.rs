//! Records kept as JSON text in one attribute of the items of one partition (quarantined
//! batch messages, ratings): the whole partition read back, each record parsed. A record that
//! is missing or unreadable is an error, never a shorter list.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use quarry_core::ports::{Dependency, StoreError};
use serde::de::DeserializeOwned;

use crate::sdk::describe;

/// Every record under `pk`, from attribute `attribute`, in sort-key order.
pub async fn read_partition<T: DeserializeOwned>(
    client: &Client,
    table: &str,
    pk: &str,
    attribute: &str,
    what: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    let mut pages = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| StoreError::unavailable(Dependency::DynamoDb, what, describe(&e)))?;
        for item in page.items() {
            let text = item
                .get(attribute)
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| {
                    StoreError::invalid(Dependency::DynamoDb, what, "an item without its record")
                })?;
            out.push(
                serde_json::from_str(text)
                    .map_err(|e| StoreError::invalid(Dependency::DynamoDb, what, e.to_string()))?,
            );
        }
    }
    Ok(out)
}
