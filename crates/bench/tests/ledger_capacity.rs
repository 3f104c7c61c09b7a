//! One tenant at 1,000 requests per second under the capacity model (moto with a proxy
//! that counts every write per item): today's ledger touches no item past DynamoDB's
//! 1,000 write units per second and runs no two transactions on one item at once, and it
//! counts every answer exactly once, though the aggregation fails part way and the stream
//! delivers again. The design before markers and shards, run the same way, reports the hot
//! items it had.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quarry_bench::capacity::{Design, run};
use quarry_testkit::capacity::ITEM_WCU_PER_SEC;

const REQUESTS: usize = 1_000;
const INSTANCES: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenant_at_1000_rps_writes_no_hot_item_and_counts_each_answer_once() {
    let after = run(Design::Markers, REQUESTS, INSTANCES, true)
        .await
        .unwrap();
    println!("{}", after.report.summary("markers"));
    let r = &after.report;
    assert_eq!(after.answered, REQUESTS as u64);
    assert!(after.cache_hits >= 400, "{} cache hits", after.cache_hits);
    assert!(
        r.over_limit.is_empty(),
        "items over {ITEM_WCU_PER_SEC} WCU/s: {:?}",
        r.over_limit
    );
    assert_eq!(r.overlapping_transactions, 0, "{:?}", r.overlap_example);
    // The request path writes one marker (and the odd rate lease and cache entry).
    assert!(
        r.request_path_units_per_request < 4.0,
        "{}",
        r.summary("markers")
    );

    // Exactly once: the aggregation failed mid-batch, was delivered again, and the ledger
    // equals what the answers said they cost, every request counted once.
    assert!(after.aggregation_failures > 0, "the failure was injected");
    assert_eq!(after.aggregated.counted, REQUESTS);
    assert_eq!(after.ledger.requests, REQUESTS as u64);
    assert_eq!(after.ledger.cached_requests, after.cache_hits);
    assert_eq!(after.ledger.cost_micro, after.answered_cost.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_design_before_markers_reports_its_hot_items() {
    let before = run(Design::Before, REQUESTS, INSTANCES, false)
        .await
        .unwrap();
    println!("{}", before.report.summary("before"));
    let r = &before.report;
    // Every request wrote the month total: 2 units in a transaction, 2,000 per second.
    let month_total = r
        .over_limit
        .iter()
        .find(|l| l.item.ends_with(&format!("|T#hot#M#{}|TOTAL", month())))
        .unwrap_or_else(|| panic!("the month total is not over the limit: {:?}", r.hottest));
    assert!(month_total.write_units_per_sec >= 2.0 * ITEM_WCU_PER_SEC);
    assert!(r.overlapping_transactions > 0);
    assert!(r.sustained_rps < 600.0, "{}", r.sustained_rps);
    // It counted exactly too: the design was slow, not wrong.
    assert_eq!(before.ledger.requests, REQUESTS as u64);
    assert_eq!(before.ledger.cost_micro, before.answered_cost.0);
}

fn month() -> String {
    quarry_aws::ledger::Buckets::of(chrono::Utc::now().timestamp_millis()).month
}
