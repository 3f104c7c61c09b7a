//! The embedding cache on the response cache's DynamoDB table: one item per text, `pk`
//! `emb#...` (the key hashes the tenant, model, dimensions, normalisation, input type and
//! text), the vector as little-endian f32 bytes in `v`, and `expires_at`, checked on read.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use quarry_core::ports::{Dependency, EmbeddingCache, StoreError};

use crate::dynamo_cache::DynamoCache;
use crate::sdk::describe;

fn err(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, "embedding cache", describe(e))
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[async_trait]
impl EmbeddingCache for DynamoCache {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let now = self.clock().now_secs();
        let mut found: HashMap<String, Vec<f32>> = HashMap::new();
        // BatchGetItem takes 100 keys; one request may hold the same key once.
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut wanted = KeysAndAttributes::builder();
            for k in chunk {
                wanted = wanted.keys(HashMap::from([(
                    "pk".to_owned(),
                    AttributeValue::S((*k).clone()),
                )]));
            }
            let mut request = Some(wanted.build().map_err(|e| err(&e))?);
            // Unprocessed keys (throttling) are asked again, a few times.
            for _ in 0..5 {
                let Some(r) = request.take() else { break };
                let out = self
                    .client()
                    .batch_get_item()
                    .request_items(self.table(), r)
                    .send()
                    .await
                    .map_err(|e| err(&e))?;
                for item in out
                    .responses()
                    .and_then(|m| m.get(self.table()))
                    .into_iter()
                    .flatten()
                {
                    let fresh = item
                        .get("expires_at")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<i64>().ok())
                        .is_some_and(|t| t > now);
                    if let (true, Some(AttributeValue::S(pk)), Some(AttributeValue::B(v))) =
                        (fresh, item.get("pk"), item.get("v"))
                    {
                        found.insert(pk.clone(), from_bytes(v.as_ref()));
                    }
                }
                request = out
                    .unprocessed_keys()
                    .and_then(|m| m.get(self.table()))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn put_many(
        &self,
        entries: &[(String, Vec<f32>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let expires = self.clock().now_secs() + ttl.as_secs() as i64;
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&(String, Vec<f32>)> =
            entries.iter().filter(|(k, _)| seen.insert(k)).collect();
        for chunk in unique.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|(k, v)| {
                    let put = PutRequest::builder()
                        .item("pk", AttributeValue::S(k.clone()))
                        .item("v", AttributeValue::B(Blob::new(to_bytes(v))))
                        .item("expires_at", AttributeValue::N(expires.to_string()))
                        .build()
                        .ok()?;
                    Some(WriteRequest::builder().put_request(put).build())
                })
                .collect();
            for _ in 0..5 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client()
                    .batch_write_item()
                    .request_items(self.table(), requests)
                    .send()
                    .await
                    .map_err(|e| err(&e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(self.table()))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_bytes() {
        let v = vec![0.25_f32, -1.5, 3.0e-8, f32::MAX];
        assert_eq!(from_bytes(&to_bytes(&v)), v);
    }
}
