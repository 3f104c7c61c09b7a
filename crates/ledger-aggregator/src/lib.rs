//! ledger-aggregator: consumes the usage table's DynamoDB stream and folds the per-request
//! markers into the tenants' sharded counters (`quarry_aws::ledger::aggregate`).
//!
//! Its own Lambda rather than a trigger of cost-alarm: stream processing runs per stream
//! shard, in order, retried by Lambda until it succeeds, every second under load; budget
//! evaluation runs on a schedule, reads every tenant and sends notifications. Joined, a slow
//! evaluation would hold back the counters, and a stuck batch the budgets.
//!
//! Changes that could not be counted are reported as batch item failures (by sequence
//! number): Lambda delivers them again, and the aggregation counts each record once
//! however often it sees it.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use quarry_aws::bootstrap::Metrics;
use quarry_aws::ledger::{Aggregated, Aggregator, StreamItem};

/// A stream record as the aggregation reads it.
pub fn item_of(r: &EventRecord) -> StreamItem {
    let text = |item: &serde_dynamo::Item, k: &str| match item.get(k) {
        Some(serde_dynamo::AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    StreamItem {
        sequence: r.change.sequence_number.clone().unwrap_or_default(),
        insert: r.event_name == "INSERT",
        pk: text(&r.change.keys, "pk"),
        usage: text(&r.change.new_image, "usage"),
    }
}

/// Aggregates one event; the changes not counted are the batch item failures.
pub async fn handle(aggregator: &Aggregator, event: &Event) -> (Aggregated, DynamoDbEventResponse) {
    let items: Vec<StreamItem> = event.records.iter().map(item_of).collect();
    let done = aggregator.aggregate(&items).await;
    tracing::info!(
        records = items.len(),
        counted = done.counted,
        already = done.already,
        ignored = done.ignored,
        failed = done.failed.len(),
        "ledger batch aggregated"
    );
    let mut response = DynamoDbEventResponse::default();
    for sequence in &done.failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence.clone());
        response.batch_item_failures.push(failure);
    }
    (done, response)
}

/// One Lambda invocation: the batch, then its metrics flushed before the response.
pub async fn invoke(
    aggregator: &Aggregator,
    metrics: &Metrics,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    let (done, response) = handle(aggregator, &event.payload).await;
    metrics::counter!("LedgerRecordsCounted").increment(done.counted as u64);
    metrics::counter!("LedgerRecordsAlreadyCounted").increment(done.already as u64);
    // From the answer to its counters: what budgets lag behind spend.
    if let Some(oldest) = done.oldest_counted_ms {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        metrics::histogram!("LedgerAggregationLagMs").record(now.saturating_sub(oldest) as f64);
    }
    metrics.flush();
    Ok(response)
}
