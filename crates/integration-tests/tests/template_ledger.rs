//! The ledger's aggregation in template.yaml: the usage table streams its new images; the
//! ledger aggregator consumes the marker inserts only (a DynamoDB Streams filter), reports
//! partial batch failures, bisects, and sends what it gives up on to its failure queue; it
//! may count (UpdateItem on the table, reads of its stream) and nothing more; alarms say
//! when the counters lag the markers and when stream records failed; cost-alarm reads a
//! counter's shards with BatchGetItem.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use quarry_testkit::template::{resource, statements, strings, template, yaml};
use serde_yaml_ng::Value;

/// The stream actions the event source mapping reads the stream with (ListStreams has no
/// resource-level permission: it may only be granted on `*`, which SAM's managed policy
/// for DynamoDB events does).
const STREAM_READS: [&str; 3] = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
];

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn usage_table_streams_new_images() {
    let t = template();
    let table = resource(&t, "UsageTable");
    assert_eq!(
        table["Properties"]["StreamSpecification"]["StreamViewType"],
        "NEW_IMAGE"
    );
}

#[test]
fn aggregator_consumes_marker_inserts_only() {
    let t = template();
    let f = resource(&t, "LedgerAggregatorFunction");
    assert_eq!(f["Type"], "AWS::Serverless::Function");
    assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
    assert_eq!(
        f["Metadata"]["BuildProperties"]["Binary"],
        "ledger-aggregator"
    );
    assert_eq!(f["Properties"]["LoggingConfig"]["LogFormat"], "JSON");
    let events = f["Properties"]["Events"].as_mapping().unwrap();
    assert_eq!(events.len(), 1, "one event: the usage table's stream");
    let event = events.values().next().unwrap();
    assert_eq!(event["Type"], "DynamoDB");
    let p = &event["Properties"];
    assert_eq!(p["Stream"]["Fn::GetAtt"], "UsageTable.StreamArn");
    assert_eq!(p["StartingPosition"], "TRIM_HORIZON");
    assert_eq!(
        strings(&p["FunctionResponseTypes"]),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(p["BisectBatchOnFunctionError"], true);
    assert!(
        p["MaximumBatchingWindowInSeconds"].as_u64().unwrap() <= 1,
        "the counters wait at most a second for a batch"
    );
    // Only marker inserts invoke it: not counter updates, budget states, nor the markers'
    // own `counted` updates.
    let filters = p["FilterCriteria"]["Filters"].as_sequence().unwrap();
    assert_eq!(filters.len(), 1);
    let pattern: serde_json::Value =
        serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).expect("pattern JSON");
    assert_eq!(
        pattern,
        serde_json::json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["REC"]}}}})
    );
    assert_eq!(
        p["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"],
        "LedgerStreamFailureQueue.Arn"
    );
    let queue = resource(&t, "LedgerStreamFailureQueue");
    assert_eq!(queue["Properties"]["KmsMasterKeyId"]["Ref"], "QuarryKey");
    assert_eq!(queue["Properties"]["MessageRetentionPeriod"], 1_209_600);
}

#[test]
fn aggregator_may_count_and_nothing_more() {
    let t = template();
    let f = resource(&t, "LedgerAggregatorFunction");
    let mut on_table = BTreeSet::new();
    let mut on_stream = BTreeSet::new();
    let mut others = BTreeSet::new();
    for st in statements(&f) {
        if st["Effect"] != "Allow" {
            continue;
        }
        let target = st["Resource"]["Fn::GetAtt"].as_str().map(str::to_owned);
        for a in strings(&st["Action"]) {
            let service = a.split(':').next().unwrap().to_owned();
            match (service.as_str(), target.as_deref()) {
                ("dynamodb", Some("UsageTable.Arn")) => {
                    on_table.insert(a);
                }
                ("dynamodb", Some("UsageTable.StreamArn")) => {
                    on_stream.insert(a);
                }
                ("dynamodb", _) => panic!("{a} on {}", yaml(&st["Resource"])),
                ("sqs", Some("LedgerStreamFailureQueue.Arn")) | ("kms", Some("QuarryKey.Arn")) => {
                    others.insert(a);
                }
                _ => panic!("unexpected {a} on {}", yaml(&st["Resource"])),
            }
        }
    }
    // Transactions are authorised per item: counting is UpdateItem only (SET counted on
    // the marker, ADD to the counters); never a Put or a Delete.
    assert_eq!(on_table, set(&["dynamodb:UpdateItem"]));
    assert_eq!(on_stream, set(&STREAM_READS));
    assert_eq!(
        others,
        set(&["sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey"])
    );
}

#[test]
fn lag_and_failures_alarm() {
    let t = template();
    let lag = resource(&t, "LedgerAggregationLagAlarm")["Properties"].clone();
    assert_eq!(lag["Namespace"], "AWS/Lambda");
    assert_eq!(lag["MetricName"], "IteratorAge");
    assert_eq!(lag["Dimensions"][0]["Name"], "FunctionName");
    assert_eq!(
        lag["Dimensions"][0]["Value"]["Ref"],
        "LedgerAggregatorFunction"
    );
    assert_eq!(lag["ExtendedStatistic"], "p99");
    assert!(lag.get("Statistic").is_none());
    assert_eq!(lag["Threshold"], 10000);
    assert_eq!(lag["Period"], 60);
    assert_eq!(lag["EvaluationPeriods"], 3);
    assert_eq!(lag["ComparisonOperator"], "GreaterThanThreshold");
    let failures = resource(&t, "LedgerStreamFailuresAlarm")["Properties"].clone();
    assert_eq!(failures["Namespace"], "AWS/SQS");
    assert_eq!(failures["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(
        failures["Dimensions"][0]["Value"]["Fn::GetAtt"],
        "LedgerStreamFailureQueue.QueueName"
    );
    assert_eq!(failures["Threshold"], 0);
    assert_eq!(failures["ComparisonOperator"], "GreaterThanThreshold");
    for alarm in [&lag, &failures] {
        assert!(yaml(&alarm["AlarmActions"]).contains("AlarmsTopic"));
        assert!(
            yaml(&alarm["AlarmName"]).contains("quarry-${Stage}-"),
            "the stack key admits CloudWatch for quarry-<stage>-* alarms only"
        );
    }
    // The dashboard shows the lag and lists both alarms.
    let body = resource(&t, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains(r#""IteratorAge", "FunctionName", "${LedgerAggregatorFunction}""#));
    for alarm in ["LedgerAggregationLagAlarm", "LedgerStreamFailuresAlarm"] {
        assert!(body.contains(&format!("${{{alarm}.Arn}}")), "{alarm}");
    }
}

#[test]
fn cost_alarm_reads_sharded_counters() {
    let t = template();
    let cost = resource(&t, "CostAlarmFunction");
    let usage: Vec<String> = statements(&cost)
        .iter()
        .filter(|st| st["Effect"] == "Allow" && st["Resource"]["Fn::GetAtt"] == "UsageTable.Arn")
        .flat_map(|st| strings(&st["Action"]))
        .collect();
    for a in [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
    ] {
        assert!(usage.iter().any(|u| u == a), "CostAlarmFunction: {a}");
    }
    // In VpcMode On the reads go through the DynamoDB gateway endpoint, which must admit
    // them too.
    let endpoint = resource(&t, "DynamoDbEndpoint");
    let admitted: Vec<String> = endpoint["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|st| yaml(&st["Resource"]).contains("UsageTable.Arn"))
        .flat_map(|st: &Value| strings(&st["Action"]))
        .collect();
    assert!(admitted.iter().any(|a| a == "dynamodb:BatchGetItem"));
}
