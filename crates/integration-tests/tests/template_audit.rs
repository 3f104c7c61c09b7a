//! The audit trail, feedback and traces in template.yaml: a write-once bucket (Object Lock,
//! compliance mode) fed by a Firehose stream partitioned by tenant and day, a spill queue
//! for what the stream refuses, the Athena table over it (the same as
//! infra/athena/audit.sql), the functions' grants; the feedback route, its permissions
//! and dashboard widgets; X-Ray always, OpenTelemetry to an ADOT collector layer when set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use quarry_testkit::template::{
    document_statements, of_type, resource, statements, strings, template, yaml,
};
use serde_yaml_ng::Value;

/// The audit record's columns, as the Athena table has them (tenant and date are the
/// partition keys).
const COLUMNS: [(&str, &str); 23] = [
    ("schema_version", "int"),
    ("request_id", "string"),
    ("time", "string"),
    ("level", "string"),
    ("key", "string"),
    ("prompt", "struct<name:string,version:bigint>"),
    ("model", "string"),
    ("base_model", "string"),
    ("region", "string"),
    ("params", "string"),
    (
        "usage",
        "struct<input:bigint,output:bigint,cache_read:bigint,cache_write:bigint>",
    ),
    ("cost_usd", "string"),
    ("cached", "boolean"),
    ("fallbacks", "array<string>"),
    ("guardrails", "string"),
    ("grounding", "string"),
    ("sources", "array<struct<uri:string,score:double>>"),
    ("input_sha256", "string"),
    ("output_sha256", "string"),
    ("input", "string"),
    ("output", "string"),
    ("variables", "string"),
    ("truncated", "boolean"),
];

/// The functions that serve requests, and so write the trail.
const AUDITING: [&str; 4] = [
    "ChatFunction",
    "ChatStreamFunction",
    "BatchWorkerFunction",
    "BulkTrackerFunction",
];

fn sid(function: &Value, sid: &str) -> Value {
    statements(function)
        .into_iter()
        .find(|st| st["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid}"))
}

#[test]
fn the_audit_bucket_is_write_once_for_the_retention_period() {
    let t = template();
    let param = &t["Parameters"]["AuditRetentionDays"];
    assert_eq!(param["Default"], 365);
    assert_eq!(param["MinValue"], 1);
    let bucket = resource(&t, "AuditBucket");
    assert_eq!(bucket["DeletionPolicy"], "Retain");
    assert_eq!(bucket["UpdateReplacePolicy"], "Retain");
    let p = &bucket["Properties"];
    // CloudFormation names it <stack>-auditbucket-<suffix>: "audit" is in the name.
    assert!(p.get("BucketName").is_none());
    assert!("AuditBucket".to_lowercase().contains("audit"));
    assert_eq!(p["ObjectLockEnabled"], true);
    let lock = &p["ObjectLockConfiguration"];
    assert_eq!(lock["ObjectLockEnabled"], "Enabled");
    let retention = &lock["Rule"]["DefaultRetention"];
    assert_eq!(retention["Mode"], "COMPLIANCE");
    assert_eq!(retention["Days"]["Ref"], "AuditRetentionDays");
    assert!(retention.get("Years").is_none());
    assert_eq!(p["VersioningConfiguration"]["Status"], "Enabled");
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "aws:kms"
    );
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"],
        "QuarryKey.Arn"
    );
    assert_eq!(sse["BucketKeyEnabled"], true);
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(p["PublicAccessBlockConfiguration"][flag], true, "{flag}");
    }
    // Nothing expires the records.
    assert!(p.get("LifecycleConfiguration").is_none());
}

#[test]
fn the_audit_bucket_policy_refuses_deletes_lock_changes_and_plain_http_to_everyone() {
    let t = template();
    let policy = resource(&t, "AuditBucketPolicy");
    assert_eq!(policy["Properties"]["Bucket"]["Ref"], "AuditBucket");
    let all = document_statements(&policy["Properties"]["PolicyDocument"]["Statement"]);
    let denies = |action: &str| {
        all.iter().any(|st| {
            st["Effect"] == "Deny"
                && st["Principal"] == "*"
                && st.get("Condition").is_none()
                && strings(&st["Action"]).iter().any(|a| a == action)
                && yaml(&st["Resource"]).contains("${AuditBucket.Arn}/*")
        })
    };
    for action in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:BypassGovernanceRetention",
    ] {
        assert!(denies(action), "{action} is not refused");
    }
    assert!(all.iter().any(|st| {
        st["Effect"] == "Deny"
            && st["Principal"] == "*"
            && st["Action"] == "s3:*"
            && st["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    }));
    assert!(all.iter().all(|st| st["Effect"] == "Deny"), "only denies");
}

#[test]
fn the_audit_stream_partitions_by_tenant_and_day_encrypted_and_gzipped() {
    let t = template();
    let stream = resource(&t, "AuditStream");
    let p = &stream["Properties"];
    assert_eq!(p["DeliveryStreamType"], "DirectPut");
    let sse = &p["DeliveryStreamEncryptionConfigurationInput"];
    assert_eq!(sse["KeyType"], "CUSTOMER_MANAGED_CMK");
    assert_eq!(sse["KeyARN"]["Fn::GetAtt"], "QuarryKey.Arn");
    let s3 = &p["ExtendedS3DestinationConfiguration"];
    assert_eq!(s3["BucketARN"]["Fn::GetAtt"], "AuditBucket.Arn");
    assert_eq!(s3["RoleARN"]["Fn::GetAtt"], "AuditStreamRole.Arn");
    assert_eq!(
        s3["Prefix"],
        "audit/tenant=!{partitionKeyFromQuery:tenant}/date=!{partitionKeyFromQuery:date}/"
    );
    assert_eq!(
        s3["ErrorOutputPrefix"],
        "audit-errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
    );
    assert_eq!(s3["CompressionFormat"], "GZIP");
    assert_eq!(
        s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"]["Fn::GetAtt"],
        "QuarryKey.Arn"
    );
    assert_eq!(s3["BufferingHints"]["SizeInMBs"], 64);
    assert_eq!(s3["BufferingHints"]["IntervalInSeconds"], 60);
    assert_eq!(s3["DynamicPartitioningConfiguration"]["Enabled"], true);
    let processing = &s3["ProcessingConfiguration"];
    assert_eq!(processing["Enabled"], true);
    let processors = processing["Processors"].as_sequence().unwrap();
    assert_eq!(
        processors.len(),
        1,
        "no delimiter processor: records end in \\n"
    );
    assert_eq!(processors[0]["Type"], "MetadataExtraction");
    let parameters: BTreeMap<String, String> = processors[0]["Parameters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["ParameterName"].as_str().unwrap().to_owned(),
                p["ParameterValue"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        parameters["MetadataExtractionQuery"],
        "{tenant: .tenant, date: .time[0:10]}"
    );
    assert_eq!(parameters["JsonParsingEngine"], "JQ-1.6");
    let logging = &s3["CloudWatchLoggingOptions"];
    assert_eq!(logging["Enabled"], true);
    assert_eq!(logging["LogGroupName"]["Ref"], "AuditStreamLogs");
    assert_eq!(logging["LogStreamName"]["Ref"], "AuditStreamDeliveryLog");
    // Athena finds the objects where Firehose puts them.
    let table = resource(&t, "AuditTable");
    let template_location =
        &table["Properties"]["TableInput"]["Parameters"]["storage.location.template"]["Fn::Sub"];
    let prefix = s3["Prefix"]
        .as_str()
        .unwrap()
        .replace("!{partitionKeyFromQuery:tenant}", "${!tenant}")
        .replace("!{partitionKeyFromQuery:date}", "${!date}");
    assert_eq!(
        template_location.as_str().unwrap(),
        format!("s3://${{AuditBucket}}/{prefix}")
    );
}

#[test]
fn the_stream_role_writes_the_audit_bucket_through_the_stack_key_and_nothing_else() {
    let t = template();
    let role = resource(&t, "AuditStreamRole");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "firehose.amazonaws.com");
    assert!(trust["Condition"]["StringEquals"]["aws:SourceAccount"].is_mapping());
    let policies = role["Properties"]["Policies"].as_sequence().unwrap();
    let all: Vec<Value> = policies
        .iter()
        .flat_map(|p| document_statements(&p["PolicyDocument"]["Statement"]))
        .collect();
    let mut actions = Vec::new();
    for st in &all {
        assert_eq!(st["Effect"], "Allow");
        assert_ne!(st["Resource"], "*");
        let resource = yaml(&st["Resource"]);
        for a in strings(&st["Action"]) {
            assert!(!a.contains('*'), "{a}");
            let expected = match a.split(':').next().unwrap() {
                "s3" => "AuditBucket",
                "kms" => "QuarryKey",
                "logs" => "AuditStreamLogs",
                other => panic!("unexpected service {other}"),
            };
            assert!(resource.contains(expected), "{a}: {resource}");
            actions.push(a);
        }
    }
    for a in [
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "kms:GenerateDataKey",
        "kms:Encrypt",
        "logs:PutLogEvents",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}");
    }
    let logs = resource(&t, "AuditStreamLogs");
    assert!(yaml(&logs["Properties"]["LogGroupName"]).contains("/quarry/${Stage}/"));
}

#[test]
fn the_audit_spill_has_its_dead_letter_queue_alarm_and_senders() {
    let t = template();
    let spill = resource(&t, "AuditSpillQueue");
    let ledger = resource(&t, "LedgerSpillQueue");
    let redrive = &spill["Properties"]["RedrivePolicy"];
    assert_eq!(
        redrive["deadLetterTargetArn"]["Fn::GetAtt"],
        "AuditSpillDeadLetterQueue.Arn"
    );
    assert_eq!(
        redrive["maxReceiveCount"],
        ledger["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    );
    for q in ["AuditSpillQueue", "AuditSpillDeadLetterQueue"] {
        assert_eq!(
            resource(&t, q)["Properties"]["KmsMasterKeyId"]["Ref"],
            "QuarryKey",
            "{q}"
        );
    }
    let alarm = resource(&t, "AuditSpillDepthAlarm")["Properties"].clone();
    let like = resource(&t, "LedgerSpillDepthAlarm")["Properties"].clone();
    assert_eq!(
        alarm["Dimensions"][0]["Value"]["Fn::GetAtt"],
        "AuditSpillQueue.QueueName"
    );
    for k in [
        "Namespace",
        "MetricName",
        "Statistic",
        "Period",
        "EvaluationPeriods",
        "Threshold",
        "ComparisonOperator",
        "AlarmActions",
        "OKActions",
    ] {
        assert_eq!(alarm[k], like[k], "{k}");
    }
    // Audit records come from the functions that serve requests only, over TLS.
    let policy = of_type(&t, "AWS::SQS::QueuePolicy")
        .into_iter()
        .find(|(_, p)| p["Properties"]["Queues"][0]["Ref"] == "AuditSpillQueue")
        .expect("a policy for AuditSpillQueue")
        .1;
    let text = yaml(&policy);
    assert!(text.contains("aws:SecureTransport"));
    for f in AUDITING {
        assert!(text.contains(&format!("{f}Role.Arn")), "{f}");
    }
    assert!(!text.contains("CostAlarmFunctionRole") && !text.contains("CacheLookupFunctionRole"));
}

/// Columns as (name, type).
type Columns = Vec<(String, String)>;

/// infra/athena/audit.sql's CREATE EXTERNAL TABLE: its columns, its partition keys, and the
/// rest (SerDe, location, properties).
fn ddl() -> (Columns, Columns, String) {
    let sql =
        std::fs::read_to_string(quarry_testkit::workspace_root().join("infra/athena/audit.sql"))
            .unwrap();
    let columns_of = |block: &str| -> Columns {
        block
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (name, ty) = l.split_once(' ').unwrap();
                (name.trim_matches('`').to_owned(), ty.trim().to_owned())
            })
            .collect()
    };
    let body = sql
        .split_once("CREATE EXTERNAL TABLE IF NOT EXISTS audit (")
        .unwrap()
        .1;
    let (columns, rest) = body.split_once("\n)\nPARTITIONED BY (").unwrap();
    let (partitions, rest) = rest.split_once("\n)\n").unwrap();
    (columns_of(columns), columns_of(partitions), rest.to_owned())
}

#[test]
fn athena_reads_the_trail_through_projected_partitions_as_audit_sql_says() {
    let t = template();
    let table = resource(&t, "AuditTable");
    let input = &table["Properties"]["TableInput"];
    assert_eq!(table["Properties"]["DatabaseName"]["Ref"], "AuditDatabase");
    assert_eq!(input["TableType"], "EXTERNAL_TABLE");
    let pairs = |v: &Value| -> Columns {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_owned(),
                    c["Type"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let partitions = pairs(&input["PartitionKeys"]);
    assert_eq!(
        partitions,
        [("tenant", "string"), ("date", "string")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let storage = &input["StorageDescriptor"];
    let columns = pairs(&storage["Columns"]);
    assert_eq!(
        columns,
        COLUMNS.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
    // The columns are the record's fields (its tenant is the partition key): a field added
    // to the record and not to the table fails here.
    let record = quarry_core::audit::AuditRecord {
        schema_version: 1,
        request_id: String::new(),
        tenant: String::new(),
        time: String::new(),
        level: quarry_core::audit::AuditLevel::Full,
        key: None,
        prompt: None,
        model: String::new(),
        base_model: String::new(),
        region: None,
        params: String::new(),
        usage: Default::default(),
        cost_usd: None,
        cached: false,
        fallbacks: vec![],
        guardrails: String::new(),
        grounding: None,
        sources: vec![],
        input_sha256: String::new(),
        output_sha256: String::new(),
        input: None,
        variables: None,
        output: None,
        truncated: true,
    };
    let mut fields: Vec<String> = serde_json::to_value(&record)
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "tenant")
        .cloned()
        .collect();
    let mut names: Vec<String> = COLUMNS.iter().map(|(n, _)| (*n).to_owned()).collect();
    fields.sort();
    names.sort();
    assert_eq!(fields, names);
    assert_eq!(
        storage["SerdeInfo"]["SerializationLibrary"],
        "org.openx.data.jsonserde.JsonSerDe"
    );
    assert_eq!(storage["Location"]["Fn::Sub"], "s3://${AuditBucket}/audit/");
    let params = &input["Parameters"];
    for (k, v) in [
        ("projection.enabled", "true"),
        ("projection.tenant.type", "injected"),
        ("projection.date.type", "date"),
        ("projection.date.format", "yyyy-MM-dd"),
        ("projection.date.range", "2024-01-01,NOW"),
    ] {
        assert_eq!(params[k], v, "{k}");
    }
    // The DDL is the same table.
    let (sql_columns, sql_partitions, properties) = ddl();
    assert_eq!(sql_columns, columns);
    assert_eq!(sql_partitions, partitions);
    assert!(properties.contains("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'"));
    assert!(properties.contains("LOCATION 's3://${bucket}/audit/'"));
    for (k, v) in params.as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        let v = match v {
            Value::String(s) => s.clone(),
            other => other["Fn::Sub"]
                .as_str()
                .unwrap()
                .replace("${AuditBucket}", "${bucket}")
                .replace("${!", "${"),
        };
        assert!(
            properties.contains(&format!("'{k}' = '{v}'")),
            "audit.sql lacks '{k}' = '{v}'"
        );
    }
    // Athena's names: underscores, not the stage's hyphens.
    let db = yaml(&resource(&t, "AuditDatabase")["Properties"]["DatabaseInput"]["Name"]);
    assert!(
        db.contains("Fn::Join") && db.contains("quarry_${Stage}"),
        "{db}"
    );
}

#[test]
fn the_functions_may_write_the_trail_and_cost_alarm_replay_it() {
    let t = template();
    for name in AUDITING {
        let f = resource(&t, name);
        let put = sid(&f, "AuditTrail");
        assert_eq!(
            strings(&put["Action"]),
            ["firehose:PutRecord", "firehose:PutRecordBatch"],
            "{name}"
        );
        assert_eq!(put["Resource"]["Fn::GetAtt"], "AuditStream.Arn", "{name}");
        let spill = sid(&f, "AuditSpill");
        assert_eq!(strings(&spill["Action"]), ["sqs:SendMessage"], "{name}");
        assert_eq!(
            spill["Resource"]["Fn::GetAtt"], "AuditSpillQueue.Arn",
            "{name}"
        );
        let key = sid(&f, "EncryptedData");
        assert_eq!(key["Resource"]["Fn::GetAtt"], "QuarryKey.Arn", "{name}");
        assert!(strings(&key["Action"]).contains(&"kms:GenerateDataKey".to_owned()));
    }
    let cost = resource(&t, "CostAlarmFunction");
    let put = sid(&cost, "AuditTrail");
    assert_eq!(put["Resource"]["Fn::GetAtt"], "AuditStream.Arn");
    assert!(strings(&put["Action"]).contains(&"firehose:PutRecordBatch".to_owned()));
    let replay = sid(&cost, "ReplayAuditSpill");
    assert_eq!(
        strings(&replay["Action"]),
        [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes"
        ]
    );
    assert_eq!(replay["Resource"]["Fn::GetAtt"], "AuditSpillQueue.Arn");
    // No firehose or audit-spill grant anywhere else, and none on `*`.
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        for st in statements(&f) {
            let text = yaml(&st["Resource"]);
            let firehose = strings(&st["Action"])
                .iter()
                .any(|a| a.starts_with("firehose:"));
            if firehose {
                assert!(name != "CacheLookupFunction", "{name}");
                assert_eq!(text.trim(), "Fn::GetAtt: AuditStream.Arn", "{name}");
            }
            assert_ne!(st["Resource"], "*", "{name}");
        }
    }
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(env["QUARRY_AUDIT_STREAM"]["Ref"], "AuditStream");
    assert_eq!(env["QUARRY_AUDIT_SPILL_QUEUE"]["Ref"], "AuditSpillQueue");
    for output in [
        "AuditBucketName",
        "AuditStreamName",
        "AuditSpillQueueUrl",
        "AuditAthenaTable",
    ] {
        assert!(t["Outputs"][output]["Value"].is_mapping(), "{output}");
    }
    assert_eq!(
        t["Outputs"]["AuditAthenaTable"]["Value"]["Fn::Sub"],
        "${AuditDatabase}.${AuditTable}"
    );
}

#[test]
fn feedback_has_its_route_permissions_and_dashboard() {
    let t = template();
    let chat = resource(&t, "ChatFunction");
    let event = &chat["Properties"]["Events"]["Feedback"];
    assert_eq!(event["Type"], "HttpApi");
    assert_eq!(event["Properties"]["Path"], "/v1/feedback");
    assert_eq!(event["Properties"]["Method"], "POST");
    assert_eq!(event["Properties"]["ApiId"]["Ref"], "HttpApi");
    for name in ["ChatFunction", "ChatStreamFunction"] {
        let f = resource(&t, name);
        let usage: Vec<String> = statements(&f)
            .iter()
            .filter(|st| st["Resource"]["Fn::GetAtt"] == "UsageTable.Arn")
            .flat_map(|st| strings(&st["Action"]))
            .collect();
        for a in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"] {
            assert!(usage.iter().any(|u| u == a), "{name}: {a}");
        }
    }
    // The dashboard: FeedbackScore averaged per prompt version and model (a SEARCH over
    // the metric's dimensions), FeedbackCount beside it; its body is JSON.
    let body = resource(&t, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut json = body.clone();
    while let Some(start) = json.find("${") {
        let end = start + json[start..].find('}').unwrap();
        json.replace_range(start..=end, "x");
    }
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("dashboard JSON");
    let expressions: Vec<String> = dashboard["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            w["properties"]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|m| m.as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["expression"].as_str().map(str::to_owned))
        .collect();
    for (metric, stat) in [("FeedbackScore", "Average"), ("FeedbackCount", "Sum")] {
        assert!(
            expressions.iter().any(|e| {
                e.starts_with("SEARCH('{Quarry,Stage,Prompt,PromptVersion,Model} ")
                    && e.contains(&format!("MetricName=\"{metric}\""))
                    && e.contains(&format!("'{stat}'"))
            }),
            "{metric}: {expressions:?}"
        );
    }
    assert!(
        body.contains("Stage=\\\"${Stage}\\\""),
        "scoped to the stage"
    );
}

#[test]
fn functions_trace_with_x_ray_and_with_the_adot_collector_when_set() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    // Tracing Active: SAM attaches AWSXrayWriteOnlyAccess (xray:PutTraceSegments,
    // xray:PutTelemetryRecords) to every function's role.
    assert_eq!(globals["Tracing"], "Active");
    assert_eq!(t["Parameters"]["AdotCollectorLayerArn"]["Default"], "");
    assert_eq!(
        yaml(&t["Conditions"]["HasAdot"]).trim(),
        yaml(
            &serde_yaml_ng::from_str::<Value>(
                "Fn::Not: [{Fn::Equals: [{Ref: AdotCollectorLayerArn}, '']}]"
            )
            .unwrap()
        )
        .trim()
    );
    let layer = &globals["Layers"][0]["Fn::If"];
    assert_eq!(layer[0], "HasAdot");
    assert_eq!(layer[1]["Ref"], "AdotCollectorLayerArn");
    assert_eq!(layer[2]["Ref"], "AWS::NoValue");
    let env = &globals["Environment"]["Variables"];
    let when = |name: &str| -> (Value, Value) {
        let branches = &env[name]["Fn::If"];
        assert_eq!(branches[0], "HasAdot", "{name}");
        (branches[1].clone(), branches[2].clone())
    };
    assert_eq!(when("OTEL_TRACES_EXPORTER"), ("otlp".into(), "none".into()));
    assert_eq!(
        when("OTEL_EXPORTER_OTLP_ENDPOINT").0,
        "http://localhost:4318"
    );
    assert_eq!(
        when("OPENTELEMETRY_COLLECTOR_CONFIG_URI").0,
        "/opt/collector-config/config.yaml"
    );
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        let p = &f["Properties"];
        assert!(p.get("Tracing").is_none(), "{name} overrides Tracing");
        assert!(p.get("Layers").is_none(), "{name} overrides Layers");
        let service = &p["Environment"]["Variables"]["OTEL_SERVICE_NAME"]["Fn::If"];
        assert_eq!(service[0], "HasAdot", "{name}");
        assert_eq!(service[1], p["FunctionName"], "{name}");
    }
}
