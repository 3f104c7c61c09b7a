//! Reading the ledger table's stream directly: what Lambda's event source mapping does in
//! AWS, for `quarry serve` and the tests (moto serves DynamoDB Streams).
//!
//! Every shard is read from its start; a batch's failed changes are read again from the
//! first of them on the next drain. Draining twice, or two readers at once, never counts a
//! record twice: the aggregation is idempotent.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use quarry_core::ports::{Dependency, StoreError};
use tokio::sync::Mutex;

use super::aggregate::{Aggregated, Aggregator, StreamItem};
use crate::sdk::describe;

const WHAT: &str = "ledger stream";

/// Where reading a shard resumes.
#[derive(Debug, Clone)]
enum Position {
    Iterator(String),
    /// Again from this change (it failed).
    At(String),
    /// The shard is closed and read to its end.
    Done,
}

/// A reader of the usage table's stream that aggregates what it reads.
pub struct LocalStream {
    ddb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    table: String,
    aggregator: Aggregator,
    /// The stream's ARN once known, and where each shard resumes.
    positions: Mutex<(Option<String>, HashMap<String, Position>)>,
}

fn failed(e: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::unavailable(Dependency::DynamoDb, WHAT, describe(e))
}

impl LocalStream {
    pub fn new(sdk: &SdkConfig, table: &str) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Self {
            aggregator: Aggregator::new(ddb.clone(), table),
            ddb,
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            table: table.to_owned(),
            positions: Mutex::new((None, HashMap::new())),
        }
    }

    /// Reads every shard to its current end, aggregating batch by batch (at most `limit`
    /// changes each); returns what was aggregated in all.
    pub async fn drain(&self, limit: i32) -> Result<Aggregated, StoreError> {
        // One drain at a time: positions move in order.
        let mut guard = self.positions.lock().await;
        let (known_arn, positions) = &mut *guard;
        let arn = match known_arn {
            Some(arn) => arn.clone(),
            None => self.stream_arn().await?,
        };
        *known_arn = Some(arn.clone());
        let stream = self
            .streams
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .map_err(|e| failed(&e))?;
        let shards: Vec<String> = stream
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.shard_id().map(str::to_owned))
            .collect();
        self.read(&arn, shards, positions, limit).await
    }

    async fn stream_arn(&self) -> Result<String, StoreError> {
        self.ddb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| failed(&e))?
            .table()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_owned)
            .ok_or_else(|| {
                StoreError::invalid(
                    Dependency::DynamoDb,
                    WHAT,
                    format!("table {} has no stream", self.table),
                )
            })
    }

    async fn read(
        &self,
        arn: &str,
        shards: Vec<String>,
        positions: &mut HashMap<String, Position>,
        limit: i32,
    ) -> Result<Aggregated, StoreError> {
        let mut total = Aggregated::default();
        for shard in shards {
            let mut iterator = match positions.get(&shard).cloned() {
                Some(Position::Done) => continue,
                Some(Position::Iterator(i)) => i,
                at => {
                    let mut get = self
                        .streams
                        .get_shard_iterator()
                        .stream_arn(arn)
                        .shard_id(&shard);
                    get = match at {
                        Some(Position::At(seq)) => get
                            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                            .sequence_number(seq),
                        _ => get.shard_iterator_type(ShardIteratorType::TrimHorizon),
                    };
                    match get.send().await.map_err(|e| failed(&e))?.shard_iterator() {
                        Some(i) => i.to_owned(),
                        None => continue,
                    }
                }
            };
            loop {
                let out = self
                    .streams
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(limit)
                    .send()
                    .await
                    .map_err(|e| failed(&e))?;
                let items: Vec<StreamItem> = out.records().iter().filter_map(item_of).collect();
                let next = out.next_shard_iterator().map(str::to_owned);
                if items.is_empty() {
                    positions.insert(
                        shard.clone(),
                        next.map_or(Position::Done, Position::Iterator),
                    );
                    break;
                }
                let done = self.aggregator.aggregate(&items).await;
                total.counted += done.counted;
                total.already += done.already;
                total.ignored += done.ignored;
                if let Some(first) = first_failed(&items, &done.failed) {
                    // Read again from the first change not counted, as Lambda does.
                    positions.insert(shard.clone(), Position::At(first));
                    total.failed.extend(done.failed);
                    break;
                }
                match next {
                    Some(i) => iterator = i,
                    None => {
                        positions.insert(shard.clone(), Position::Done);
                        break;
                    }
                }
            }
        }
        Ok(total)
    }
}

/// The earliest failed change of a batch, in stream order.
fn first_failed(items: &[StreamItem], failed: &[String]) -> Option<String> {
    items
        .iter()
        .find(|i| failed.contains(&i.sequence))
        .map(|i| i.sequence.clone())
}

fn item_of(r: &aws_sdk_dynamodbstreams::types::Record) -> Option<StreamItem> {
    let change = r.dynamodb()?;
    let text = |m: Option<&HashMap<String, AttributeValue>>, k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    Some(StreamItem {
        sequence: change.sequence_number()?.to_owned(),
        insert: r.event_name().is_some_and(|e| e.as_str() == "INSERT"),
        pk: text(change.keys(), "pk"),
        usage: text(change.new_image(), "usage"),
    })
}

/// The ledger as `quarry serve` runs it: each record's marker, then the stream read at once,
/// so a report right after an answer includes it (in AWS the counters lag by seconds).
pub struct SettlingLedger {
    pub ledger: std::sync::Arc<super::DynamoLedger>,
    pub stream: std::sync::Arc<LocalStream>,
}

#[async_trait::async_trait]
impl quarry_core::ports::UsageLedger for SettlingLedger {
    async fn record(&self, r: &quarry_core::usage::UsageRecord) -> Result<(), StoreError> {
        self.ledger.record(r).await?;
        if let Err(e) = self.stream.drain(500).await {
            tracing::warn!(error = %e, "ledger stream not read; the background reader will");
        }
        Ok(())
    }
}
