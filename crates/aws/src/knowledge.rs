//! Retrieval on Bedrock Agent Runtime's `Retrieve` (the [`Retriever`] port), and the
//! retrieval cache on the response cache's DynamoDB table (the [`RetrievalCache`] port):
//! one item per key, `pk` `ret#{key}` (the key starts with the tenant's digest), the
//! passages as JSON in `v`, and `expires_at`, checked on read.
//!
//! The SDK's own retries are off, as for the model client: a failed retrieval is the
//! prompt's to handle (fail, or answer degraded), inside the request's deadline.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::config::retry::RetryConfig;
use aws_sdk_bedrockagentruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockagentruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockagentruntime::types as kt;
use aws_sdk_dynamodb::types::AttributeValue;
use quarry_core::ports::{Dependency, RetrievalCache, Retriever, StoreError, StoreErrorKind};
use quarry_core::retrieval::{Passage, RetrievalQuery, SearchType};
use serde_json::{Map, Value, json};

use crate::document::{to_document, to_json};
use crate::dynamo_cache::DynamoCache;
use crate::sdk::describe;

#[derive(Clone, Debug)]
pub struct BedrockRetriever {
    client: Client,
    /// For the rerank model's ARN, when a prompt names the model by ID.
    region: String,
}

impl BedrockRetriever {
    pub fn new(sdk: &SdkConfig) -> Self {
        let config = aws_sdk_bedrockagentruntime::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
            region: sdk
                .region()
                .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string()),
        }
    }
}

fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::invalid(Dependency::KnowledgeBases, "retrieval", what)
}

/// A RetrievalFilter (checked by the core) as the SDK's type.
pub fn filter(value: &Value) -> Result<kt::RetrievalFilter, StoreError> {
    let object = value
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| invalid("a filter has exactly one operator"))?;
    let Some((op, operand)) = object.iter().next() else {
        return Err(invalid("a filter has exactly one operator"));
    };
    if matches!(op.as_str(), "andAll" | "orAll") {
        let items = operand
            .as_array()
            .ok_or_else(|| invalid(format!("{op} takes a list")))?
            .iter()
            .map(filter)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if op == "andAll" {
            kt::RetrievalFilter::AndAll(items)
        } else {
            kt::RetrievalFilter::OrAll(items)
        });
    }
    let attribute = kt::FilterAttribute::builder()
        .key(
            operand
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
        .value(to_document(operand.get("value").unwrap_or(&Value::Null)))
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(match op.as_str() {
        "equals" => kt::RetrievalFilter::Equals(attribute),
        "notEquals" => kt::RetrievalFilter::NotEquals(attribute),
        "greaterThan" => kt::RetrievalFilter::GreaterThan(attribute),
        "greaterThanOrEquals" => kt::RetrievalFilter::GreaterThanOrEquals(attribute),
        "lessThan" => kt::RetrievalFilter::LessThan(attribute),
        "lessThanOrEquals" => kt::RetrievalFilter::LessThanOrEquals(attribute),
        "in" => kt::RetrievalFilter::In(attribute),
        "notIn" => kt::RetrievalFilter::NotIn(attribute),
        "startsWith" => kt::RetrievalFilter::StartsWith(attribute),
        "stringContains" => kt::RetrievalFilter::StringContains(attribute),
        "listContains" => kt::RetrievalFilter::ListContains(attribute),
        other => return Err(invalid(format!("unknown filter operator '{other}'"))),
    })
}

/// Bedrock's location as JSON (as the Retrieve API writes it), and its URI.
fn location(l: Option<&kt::RetrievalResultLocation>) -> (Value, Option<String>) {
    let Some(l) = l else {
        return (Value::Null, None);
    };
    let mut out = Map::new();
    out.insert("type".into(), json!(l.r#type().as_str()));
    let mut uri = None;
    let mut put = |field: &str, key: &str, value: Option<&str>| {
        if let Some(v) = value {
            out.insert(field.into(), json!({ key: v }));
            uri.get_or_insert_with(|| v.to_owned());
        }
    };
    put("s3Location", "uri", l.s3_location().and_then(|x| x.uri()));
    put("webLocation", "url", l.web_location().and_then(|x| x.url()));
    put(
        "confluenceLocation",
        "url",
        l.confluence_location().and_then(|x| x.url()),
    );
    put(
        "salesforceLocation",
        "url",
        l.salesforce_location().and_then(|x| x.url()),
    );
    put(
        "sharePointLocation",
        "url",
        l.share_point_location().and_then(|x| x.url()),
    );
    put(
        "kendraDocumentLocation",
        "uri",
        l.kendra_document_location().and_then(|x| x.uri()),
    );
    put(
        "customDocumentLocation",
        "id",
        l.custom_document_location().and_then(|x| x.id()),
    );
    (Value::Object(out), uri)
}

fn kind_of(code: Option<&str>) -> StoreErrorKind {
    match code.unwrap_or("") {
        "ValidationException"
        | "ResourceNotFoundException"
        | "AccessDeniedException"
        | "ConflictException" => StoreErrorKind::Invalid,
        // Throttling, quotas, the service's or its vector store's failures, timeouts.
        _ => StoreErrorKind::Unavailable,
    }
}

#[async_trait]
impl Retriever for BedrockRetriever {
    async fn retrieve(
        &self,
        query: &RetrievalQuery,
        timeout: Duration,
    ) -> Result<Vec<Passage>, StoreError> {
        let mut search = kt::KnowledgeBaseVectorSearchConfiguration::builder()
            .number_of_results(i32::try_from(query.top_k).unwrap_or(100));
        if let Some(t) = query.search_type {
            search = search.override_search_type(match t {
                SearchType::Semantic => kt::SearchType::Semantic,
                SearchType::Hybrid => kt::SearchType::Hybrid,
            });
        }
        if let Some(f) = &query.filter {
            search = search.filter(filter(f)?);
        }
        if let Some(r) = &query.rerank {
            let arn = if r.model.starts_with("arn:") {
                r.model.clone()
            } else {
                format!(
                    "arn:aws:bedrock:{}::foundation-model/{}",
                    self.region, r.model
                )
            };
            let model = kt::VectorSearchBedrockRerankingModelConfiguration::builder()
                .model_arn(arn)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            let mut bedrock =
                kt::VectorSearchBedrockRerankingConfiguration::builder().model_configuration(model);
            if let Some(n) = r.top_n {
                bedrock = bedrock.number_of_reranked_results(i32::try_from(n).unwrap_or(100));
            }
            let rerank = kt::VectorSearchRerankingConfiguration::builder()
                .r#type(kt::VectorSearchRerankingConfigurationType::BedrockRerankingModel)
                .bedrock_reranking_configuration(bedrock.build())
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            search = search.reranking_configuration(rerank);
        }
        let text = kt::KnowledgeBaseQuery::builder().text(&query.text).build();
        let out = self
            .client
            .retrieve()
            .knowledge_base_id(&query.knowledge_base_id)
            .retrieval_query(text)
            .retrieval_configuration(
                kt::KnowledgeBaseRetrievalConfiguration::builder()
                    .vector_search_configuration(search.build())
                    .build(),
            )
            .customize()
            .config_override(
                aws_sdk_bedrockagentruntime::config::Builder::default()
                    .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build()),
            )
            .mutate_request(crate::bedrock::trace_header())
            .send()
            .await
            .map_err(|e| {
                StoreError::new(
                    kind_of(e.code()),
                    Dependency::KnowledgeBases,
                    "retrieval",
                    describe(&e),
                )
            })?;
        Ok(out
            .retrieval_results()
            .iter()
            .map(|r| {
                let (location, uri) = location(r.location());
                Passage {
                    text: r.content().map(|c| c.text().to_owned()).unwrap_or_default(),
                    score: r.score(),
                    uri,
                    location,
                    metadata: r
                        .metadata()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), to_json(v)))
                        .collect(),
                }
            })
            .collect())
    }
}

fn cache_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, "retrieval cache", e.to_string())
}

#[async_trait]
impl RetrievalCache for DynamoCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<Passage>>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", AttributeValue::S(format!("ret#{key}")))
            .consistent_read(false)
            .send()
            .await
            .map_err(|e| cache_error(describe(&e)))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let fresh = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|t| t > self.clock().now_secs());
        match (fresh, item.get("v")) {
            (true, Some(AttributeValue::S(v))) => serde_json::from_str(v).map(Some).map_err(|e| {
                StoreError::invalid(Dependency::DynamoDb, "retrieval cache", e.to_string())
            }),
            _ => Ok(None),
        }
    }

    async fn put(&self, key: &str, passages: &[Passage], ttl: Duration) -> Result<(), StoreError> {
        let value = serde_json::to_string(passages).map_err(cache_error)?;
        let expires = self.clock().now_secs() + ttl.as_secs() as i64;
        self.client()
            .put_item()
            .table_name(self.table())
            .item("pk", AttributeValue::S(format!("ret#{key}")))
            .item("v", AttributeValue::S(value))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| cache_error(describe(&e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_sdks_union() {
        let f = filter(&json!({"andAll": [
            {"equals": {"key": "tenant", "value": "acme"}},
            {"in": {"key": "year", "value": [2024, 2025]}}
        ]}))
        .unwrap();
        let kt::RetrievalFilter::AndAll(items) = f else {
            panic!("not andAll");
        };
        assert!(matches!(&items[0], kt::RetrievalFilter::Equals(a) if a.key() == "tenant"));
        assert!(matches!(&items[1], kt::RetrievalFilter::In(_)));
        assert!(filter(&json!({"like": {"key": "a", "value": 1}})).is_err());
    }
}
