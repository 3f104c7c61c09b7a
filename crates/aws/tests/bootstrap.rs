//! What every Lambda's `main` starts with: the bootstrap installs the CloudWatch EMF
//! recorder, and its flush writes what the `metrics` facade recorded as EMF documents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use quarry_testkit::EmfCapture;
use serde_json::Value;

#[tokio::test]
async fn the_bootstrap_installs_the_recorder_and_its_flush_writes_emf() {
    let boot = quarry_aws::bootstrap::init().await;
    assert!(boot.metrics.is_installed());
    let out = EmfCapture::default();
    let metrics = boot.metrics.clone().writing_to({
        let out = out.clone();
        move || Box::new(out.clone())
    });

    metrics::counter!("CostMicroUSD").increment(1234);
    metrics.flush();
    let documents = out.documents();
    assert_eq!(documents.len(), 1, "{documents:?}");
    let doc = &documents[0];
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Quarry");
    assert_eq!(directive["Dimensions"], serde_json::json!([["Stage"]]));
    assert_eq!(directive["Metrics"][0]["Name"], "CostMicroUSD");
    assert_eq!(doc["Stage"], boot.settings.stage.as_str());
    assert_eq!(doc["CostMicroUSD"], 1234);

    // A flush writes what was collected since the last one: nothing twice.
    metrics.flush();
    assert_eq!(out.documents(), Vec::<Value>::new());

    // A second installation (a second Lambda state in one process) shares the recorder.
    assert!(quarry_aws::bootstrap::Metrics::install("other").is_installed());
}
