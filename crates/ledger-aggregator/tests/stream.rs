//! The ledger aggregation against DynamoDB (moto): Lambda stream events, delivered the way
//! a stream can deliver them (twice, out of order, split differently on a retry, after an
//! aggregation died part way), count every record exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use aws_lambda_events::event::dynamodb::Event;
use ledger_aggregator::handle;
use quarry_aws::ledger::{
    Buckets, DynamoLedger, LedgerReader, Totals, day_pk, hour_pk, marker_pk, month_pk,
};
use quarry_core::model::TokenUsage;
use quarry_core::pricing::MicroUsd;
use quarry_core::usage::UsageRecord;
use quarry_testkit::{Moto, Proxy, Stack};
use serde_json::{Value, json};

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const MODELS: [&str; 2] = [
    "amazon.nova-lite-v1:0",
    "anthropic.claude-3-haiku-20240307-v1:0",
];

fn record(i: usize, at_ms: i64) -> UsageRecord {
    UsageRecord {
        id: format!("req-{i}"),
        tenant: TENANTS[i % 3].into(),
        model: MODELS[i % 2].into(),
        feature: (i % 4 == 0).then(|| "search".to_owned()),
        usage: TokenUsage {
            input: 10 + i as u64,
            output: 3 * i as u64,
            cache_read: (i % 5) as u64,
            cache_write: 0,
            ..Default::default()
        },
        // Every seventh unpriced, every fifth a cache hit (no cost).
        cost: match (i % 7, i % 5) {
            (0, _) => None,
            (_, 0) => Some(MicroUsd(0)),
            _ => Some(MicroUsd(1_000 + i as u64 * 37)),
        },
        cached: i % 5 == 0,
        estimated: i % 11 == 0,
        key: (i % 6 == 0).then(|| "alice".to_owned()),
        service_tier: None,
        bulk: false,
        region: None,
        provisioned: None,
        prompt: Some("summarize@3".into()),
        at_ms: at_ms + i as i64,
    }
}

/// The Lambda event the stream delivers for these markers (sequence numbers from their
/// index), with a counter's MODIFY among them as the filter would let none through but a
/// consumer must ignore anyway.
fn event(records: &[(usize, &UsageRecord)]) -> Event {
    let mut out: Vec<Value> = records
        .iter()
        .map(|(i, r)| {
            let pk = marker_pk(&r.tenant, &r.id);
            json!({
                "eventID": format!("e{i}"), "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1_764_000_000,
                    "Keys": {"pk": {"S": pk}, "sk": {"S": "REC"}},
                    "NewImage": {"pk": {"S": pk}, "sk": {"S": "REC"}, "tenant": {"S": r.tenant},
                                 "usage": {"S": serde_json::to_string(r).unwrap()}},
                    "SequenceNumber": format!("{:021}", 1000 + i), "SizeBytes": 400,
                    "StreamViewType": "NEW_IMAGE"
                }
            })
        })
        .collect();
    out.push(json!({
        "eventID": "counter", "eventName": "MODIFY", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"pk": {"S": "T#acme#M#2026-11"}, "sk": {"S": "TOTAL"}},
                     "NewImage": {"pk": {"S": "T#acme#M#2026-11"}, "sk": {"S": "TOTAL"}},
                     "SequenceNumber": "999999", "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"}
    }));
    serde_json::from_value(json!({ "Records": out })).unwrap()
}

/// What the counters must say: each record once.
fn expected(records: &[UsageRecord]) -> BTreeMap<(String, String), Totals> {
    let mut out: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for r in records {
        for (pk, sk, _) in quarry_aws::ledger::aggregate::counters_of(r) {
            let e = out.entry((pk, sk)).or_default();
            *e = e.plus(&Totals::of(r));
        }
    }
    out
}

async fn check(reader: &LedgerReader, records: &[UsageRecord]) {
    let want = expected(records);
    for ((pk, sk), totals) in &want {
        assert_eq!(&reader.get(pk, sk).await.unwrap(), totals, "{pk} {sk}");
    }
    // The totals equal the sum of what the answers cost, per tenant.
    let b = Buckets::of(records[0].at_ms);
    for t in TENANTS {
        let cost: u64 = records
            .iter()
            .filter(|r| r.tenant == t)
            .map(|r| r.cost.map_or(0, |c| c.0))
            .sum();
        let n = records.iter().filter(|r| r.tenant == t).count() as u64;
        let month = reader.get(&month_pk(t, &b.month), "TOTAL").await.unwrap();
        assert_eq!((month.cost_micro, month.requests), (cost, n), "{t}");
        let day = reader.get(&day_pk(t, &b.day), "TOTAL").await.unwrap();
        assert_eq!(day.cost_micro, cost);
        let hour = reader.get(&hour_pk(t, &b.hour), "TOTAL").await.unwrap();
        assert_eq!(hour.requests, n);
    }
}

async fn markers(stack: &Stack, records: &[UsageRecord]) -> DynamoLedger {
    let ledger = DynamoLedger::new(
        &stack.sdk,
        &stack.settings.usage_table,
        &stack.provisioned.spill_queue_url,
    );
    for r in records {
        assert!(ledger.record_direct(r).await.unwrap());
    }
    ledger
}

#[tokio::test]
async fn duplicated_reordered_and_resplit_batches_count_each_record_once() {
    let stack = Stack::start().await;
    let at = chrono::Utc::now().timestamp_millis();
    // An hour's start, so every record falls in one hour, day and month.
    let at = at - at.rem_euclid(3_600_000) + 1_000;
    let records: Vec<UsageRecord> = (0..240).map(|i| record(i, at)).collect();
    let ledger = markers(&stack, &records).await;
    let aggregator = ledger.aggregator();
    let indexed: Vec<(usize, &UsageRecord)> = records.iter().enumerate().collect();

    // Batches of 50, delivered newest first; the third delivered twice; then everything
    // again split into batches of 70 (a bisected retry sees other boundaries).
    let mut batches: Vec<&[(usize, &UsageRecord)]> = indexed.chunks(50).collect();
    batches.reverse();
    batches.insert(3, batches[2]);
    let mut counted = 0;
    let mut already = 0;
    for b in batches {
        let (done, response) = handle(&aggregator, &event(b)).await;
        assert!(response.batch_item_failures.is_empty(), "{done:?}");
        assert_eq!(done.ignored, 1, "the counter's change is ignored");
        counted += done.counted;
        already += done.already;
    }
    assert_eq!((counted, already), (240, 50));
    for b in indexed.chunks(70) {
        let (done, _) = handle(&aggregator, &event(b)).await;
        assert_eq!((done.counted, done.already), (0, b.len()));
    }
    // A batch holding one record twice counts it once.
    let twice = [indexed[0], indexed[0]];
    assert_eq!(handle(&aggregator, &event(&twice)).await.0.counted, 0);
    check(
        &LedgerReader::new(&stack.sdk, &stack.settings.usage_table),
        &records,
    )
    .await;
}

#[tokio::test]
async fn an_aggregation_that_dies_part_way_is_retried_and_counts_once() {
    // DynamoDB through a proxy that can go down, moto keeping its state behind it.
    let moto = Moto::shared();
    let proxy = Proxy::start(moto.url()).await;
    let stack = Stack::start_custom(
        moto.url(),
        bedrock_emulator_config(),
        &[("AWS_ENDPOINT_URL_DYNAMODB", proxy.url())],
    )
    .await;
    let at = chrono::Utc::now().timestamp_millis();
    let at = at - at.rem_euclid(3_600_000) + 1_000;
    let records: Vec<UsageRecord> = (0..90).map(|i| record(i, at)).collect();
    let ledger = markers(&stack, &records).await;
    let aggregator = ledger.aggregator();
    let indexed: Vec<(usize, &UsageRecord)> = records.iter().enumerate().collect();

    // The first tenant's transaction committed before the process died: those records
    // are a batch already applied.
    let first: Vec<(usize, &UsageRecord)> = indexed
        .iter()
        .copied()
        .filter(|(_, r)| r.tenant == "acme")
        .collect();
    assert_eq!(handle(&aggregator, &event(&first)).await.0.counted, 30);

    // DynamoDB goes down: nothing counts, every change is reported for redelivery.
    proxy.set_up(false);
    let (done, response) = handle(&aggregator, &event(&indexed)).await;
    assert_eq!(done.counted, 0);
    assert_eq!(response.batch_item_failures.len(), 90 - done.already);
    proxy.set_up(true);

    // Lambda delivers the batch again: the rest counts, the first part does not again.
    let (done, response) = handle(&aggregator, &event(&indexed)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((done.counted, done.already), (60, 30));
    check(
        &LedgerReader::new(&stack.sdk, &stack.settings.usage_table),
        &records,
    )
    .await;
}

#[tokio::test]
async fn the_table_stream_delivers_markers_and_nothing_else_counts() {
    let stack = Stack::start().await;
    let at = chrono::Utc::now().timestamp_millis();
    let at = at - at.rem_euclid(3_600_000) + 1_000;
    let records: Vec<UsageRecord> = (0..30).map(|i| record(i, at)).collect();
    markers(&stack, &records).await;
    // Read from moto's stream of the table, twice: the second finds nothing new.
    let done = stack.settle().await;
    assert_eq!(done.counted, 30);
    let again = stack.settle().await;
    assert_eq!(again.counted, 0);
    // A second reader of the same stream from its start (a redelivery of everything):
    // every marker is already counted.
    let other =
        quarry_aws::ledger::stream::LocalStream::new(&stack.sdk, &stack.settings.usage_table);
    let replay = other.drain(7).await.unwrap();
    assert_eq!((replay.counted, replay.already), (0, 30));
    check(
        &LedgerReader::new(&stack.sdk, &stack.settings.usage_table),
        &records,
    )
    .await;
}

fn bedrock_emulator_config() -> bedrock_emulator::EmulatorConfig {
    bedrock_emulator::EmulatorConfig::builtin()
}

#[tokio::test]
async fn markers_the_stream_never_counted_are_recounted_once() {
    let stack = Stack::start().await;
    let at = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let at = at - at.rem_euclid(3_600_000) + 1_000;
    let records: Vec<UsageRecord> = (0..40).map(|i| record(i, at)).collect();
    let ledger = markers(&stack, &records).await;
    let aggregator = ledger.aggregator();
    // The stream counted the first 15, then gave up on the rest (past its 24 hours).
    let indexed: Vec<(usize, &UsageRecord)> = records.iter().enumerate().collect();
    assert_eq!(
        handle(&aggregator, &event(&indexed[..15])).await.0.counted,
        15
    );
    // A marker answered a minute ago is left to the stream.
    let young = record(99, chrono::Utc::now().timestamp_millis());
    assert!(ledger.record_direct(&young).await.unwrap());

    let before = chrono::Utc::now().timestamp_millis() - 10 * 60_000;
    let done = aggregator.recount(before).await.unwrap();
    assert_eq!((done.counted, done.failed.len()), (25, 0));
    assert_eq!(aggregator.recount(before).await.unwrap().counted, 0);
    // The stream delivering them late changes nothing.
    let (late, _) = handle(&aggregator, &event(&indexed)).await;
    assert_eq!((late.counted, late.already), (0, 40));
    check(
        &LedgerReader::new(&stack.sdk, &stack.settings.usage_table),
        &records,
    )
    .await;
}

#[test]
fn the_sample_stream_event_reads_as_one_marker() {
    let event: Event =
        serde_json::from_str(&quarry_testkit::event("dynamodb-stream-markers.json")).unwrap();
    let items: Vec<_> = event
        .records
        .iter()
        .map(ledger_aggregator::item_of)
        .collect();
    assert_eq!(items.len(), 1);
    let record = quarry_aws::ledger::aggregate::record_of(&items[0]).unwrap();
    assert_eq!(
        (record.tenant.as_str(), record.cost, record.key.as_deref()),
        ("acme", Some(MicroUsd(56)), Some("alice"))
    );
    assert_eq!(items[0].sequence, "4421584500000000017450439091");
    // The same change under another tenant's marker key is not counted.
    let mut forged = items[0].clone();
    forged.pk = Some(marker_pk("globex", &record.id));
    assert!(quarry_aws::ledger::aggregate::record_of(&forged).is_none());
}
