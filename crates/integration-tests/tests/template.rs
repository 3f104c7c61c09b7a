//! Invariants of template.yaml that must not regress: least-privilege IAM (no data-plane
//! action on `*`, Bedrock scoped to the routed models), DLQs and redrive, partial batch
//! responses, encryption at rest, TTL, JSON logs; and the HTTP routes of the template
//! are exactly the routes of the axum routers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use quarry_testkit::template::{of_type, resources, statements, strings, template};
use serde_yaml_ng::Value;

#[test]
fn functions_are_custom_runtime_cargo_lambda_with_json_logs() {
    let t = template();
    assert_eq!(t["Globals"]["Function"]["Runtime"], "provided.al2023");
    assert_eq!(t["Globals"]["Function"]["Handler"], "bootstrap");
    let functions = of_type(&t, "AWS::Serverless::Function");
    let binaries: BTreeSet<String> = functions
        .iter()
        .map(|(_, f)| {
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        binaries,
        [
            "batch-worker",
            "bulk-tracker",
            "cache-lookup",
            "chat-handler",
            "cost-alarm",
            "ledger-aggregator"
        ]
        .map(String::from)
        .into()
    );
    for (name, f) in &functions {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        assert_eq!(
            f["Properties"]["LoggingConfig"]["LogFormat"], "JSON",
            "{name}"
        );
        assert!(
            f["Properties"]["Timeout"].as_u64().is_some(),
            "{name} has no explicit timeout"
        );
        assert!(
            f["Properties"]["MemorySize"].as_u64().is_some(),
            "{name} has no explicit memory"
        );
    }
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "arm64");
}

#[test]
fn iam_is_least_privilege() {
    let t = template();
    let allowed_dynamodb = [
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "BatchWriteItem",
        "ConditionCheckItem",
        "DescribeTable",
        // Counters are read shard by shard in one batch; the aggregator reads the stream.
        "BatchGetItem",
        "DescribeStream",
        "GetRecords",
        "GetShardIterator",
    ];
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        for st in statements(&f) {
            let actions = strings(&st["Action"]);
            assert!(
                !actions.iter().any(|a| a == "*" || a.ends_with(":*")),
                "{name}: wildcard action {actions:?}"
            );
            // No data-plane action on every resource.
            assert_ne!(
                st["Resource"],
                Value::String("*".into()),
                "{name}: Resource \"*\" for {actions:?}"
            );
            for a in &actions {
                if let Some(op) = a.strip_prefix("dynamodb:") {
                    assert!(
                        allowed_dynamodb.contains(&op),
                        "{name}: unexpected DynamoDB action {a}"
                    );
                }
            }
            let text = serde_yaml_ng::to_string(&st["Resource"]).unwrap();
            if st["Sid"] == "RerankRetrievedPassages" {
                // Rerank models: exactly those the stack names.
                assert!(text.contains("RerankModelIds"), "{name}: {text}");
            } else if actions.iter().any(|a| a.starts_with("bedrock:Invoke")) {
                // Scoped to the routed models and profiles, built from the stack parameters.
                assert!(
                    text.contains("foundation-model/") && text.contains("FoundationModelIds"),
                    "{name}: {text}"
                );
                assert!(
                    text.contains("inference-profile/") && text.contains("InferenceProfileIds"),
                    "{name}: {text}"
                );
            }
            // Retrieval only from the Knowledge Bases the stack names.
            if actions.iter().any(|a| a == "bedrock:Retrieve") {
                assert!(text.contains("KnowledgeBaseArns"), "{name}: {text}");
            }
        }
    }
    // Prompts retrieve, rerank and check grounding wherever they run (chat, streamed chat,
    // batch), each permission scoped to what the stack names.
    for function in ["ChatFunction", "ChatStreamFunction", "BatchWorkerFunction"] {
        let f = resources(&t)
            .into_iter()
            .find(|(n, _)| n == function)
            .unwrap()
            .1;
        let sids: Vec<String> = statements(&f)
            .iter()
            .filter_map(|st| st["Sid"].as_str().map(str::to_owned))
            .collect();
        for sid in [
            "RetrieveFromKnowledgeBases",
            "GroundingCheck",
            "RerankRetrievedPassages",
        ] {
            assert!(
                sids.iter().any(|s| s == sid),
                "{function}: no {sid} in {sids:?}"
            );
        }
    }
    // Tenants' profiles and provisioned models may be invoked where models are: this
    // account's only.
    for function in ["ChatFunction", "ChatStreamFunction", "BatchWorkerFunction"] {
        let f = resources(&t)
            .into_iter()
            .find(|(n, _)| n == function)
            .unwrap()
            .1;
        let invoke = statements(&f)
            .into_iter()
            .find(|st| st["Sid"] == "InvokeRoutedModels")
            .unwrap();
        let text = serde_yaml_ng::to_string(&invoke["Resource"]).unwrap();
        for kind in ["application-inference-profile/*", "provisioned-model/*"] {
            assert!(
                text.contains(&format!("${{AWS::AccountId}}:{kind}")),
                "{function}: {text}"
            );
        }
    }
    // The cache API can never call a model.
    let cache = resources(&t)
        .into_iter()
        .find(|(n, _)| n == "CacheLookupFunction")
        .unwrap()
        .1;
    assert!(statements(&cache).iter().all(|st| {
        !strings(&st["Action"])
            .iter()
            .any(|a| a.starts_with("bedrock:"))
    }));
    // A customer-managed key with rotation and a key policy; no secret in the template.
    let keys = of_type(&t, "AWS::KMS::Key");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].1["Properties"]["EnableKeyRotation"], true);
    assert!(
        keys[0].1["Properties"]["KeyPolicy"]["Statement"]
            .as_sequence()
            .is_some_and(|s| !s.is_empty())
    );
    let text = quarry_testkit::template::text();
    for secret in ["qk_", "AKIA", "aws_secret_access_key"] {
        assert!(!text.contains(secret), "template mentions {secret}");
    }
}

#[test]
fn queues_have_dlqs_and_the_worker_reports_partial_failures() {
    let t = template();
    let all = resources(&t);
    let get = |n: &str| all.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let batch = get("BatchQueue");
    let redrive = &batch["Properties"]["RedrivePolicy"];
    assert_eq!(
        redrive["deadLetterTargetArn"]["Fn::GetAtt"],
        "BatchDeadLetterQueue.Arn"
    );
    assert!(redrive["maxReceiveCount"].as_u64().unwrap() >= 1);
    let worker = get("BatchWorkerFunction");
    let timeout = worker["Properties"]["Timeout"].as_u64().unwrap();
    assert!(
        batch["Properties"]["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout,
        "visibility timeout below 6 x the worker timeout"
    );
    let event = &worker["Properties"]["Events"]["BatchQueue"];
    assert_eq!(event["Type"], "SQS");
    assert_eq!(
        strings(&event["Properties"]["FunctionResponseTypes"]),
        ["ReportBatchItemFailures"]
    );
    for p in ["BatchSize", "MaximumBatchingWindowInSeconds"] {
        assert!(
            event["Properties"][p].get("Ref").is_some(),
            "{p} is not a parameter"
        );
    }
    assert!(
        event["Properties"]["ScalingConfig"]["MaximumConcurrency"]
            .get("Ref")
            .is_some()
    );
    assert!(
        get("LedgerSpillQueue")["Properties"]["RedrivePolicy"]["deadLetterTargetArn"].is_mapping()
    );
}

#[test]
fn data_is_encrypted_at_rest_with_ttl_and_point_in_time_recovery() {
    let t = template();
    let tables = of_type(&t, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 3);
    for (name, table) in tables {
        let p = &table["Properties"];
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{name}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{name}"
        );
        assert_eq!(p["SSESpecification"]["SSEType"], "KMS", "{name}");
        assert!(
            p["SSESpecification"]["KMSMasterKeyId"].is_mapping(),
            "{name}: no customer-managed key"
        );
        assert_eq!(
            p["TimeToLiveSpecification"]["AttributeName"], "expires_at",
            "{name}"
        );
        assert_eq!(p["TimeToLiveSpecification"]["Enabled"], true, "{name}");
    }
    for ty in ["AWS::SQS::Queue", "AWS::SNS::Topic"] {
        for (name, r) in of_type(&t, ty) {
            assert!(
                r["Properties"]["KmsMasterKeyId"].is_mapping(),
                "{name} is not encrypted with the stack's key"
            );
        }
    }
    for (name, r) in of_type(&t, "AWS::Logs::LogGroup") {
        assert!(
            r["Properties"]["KmsKeyId"].is_mapping(),
            "{name} is not encrypted"
        );
        assert!(
            r["Properties"]["RetentionInDays"].is_mapping(),
            "{name} keeps logs forever"
        );
    }
}

#[test]
fn every_router_route_is_in_the_template_and_every_template_route_in_a_router() {
    let t = template();
    let mut declared = BTreeSet::new();
    for (_, f) in of_type(&t, "AWS::Serverless::Function") {
        for (_, event) in f["Properties"]["Events"]
            .as_mapping()
            .cloned()
            .unwrap_or_default()
        {
            if event["Type"] == "HttpApi" {
                let method = event["Properties"]["Method"]
                    .as_str()
                    .unwrap()
                    .to_uppercase();
                let path = event["Properties"]["Path"].as_str().unwrap().to_owned();
                declared.insert((method, path));
            }
        }
    }
    let mut routed: BTreeSet<(String, String)> =
        quarry_http::routes::signatures(&chat_handler::routes())
            .into_iter()
            .collect();
    routed.extend(quarry_http::routes::signatures(&cache_lookup::routes()));
    assert_eq!(declared, routed);
}

#[test]
fn the_stack_has_its_alarms_dashboard_schedule_and_outputs() {
    let t = template();
    let alarms: BTreeSet<String> = of_type(&t, "AWS::CloudWatch::Alarm")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for a in [
        "SpendRateAlarm",
        "ThrottleAlarm",
        "ErrorRateAlarm",
        "BatchDlqDepthAlarm",
        "LedgerSpillDepthAlarm",
    ] {
        assert!(alarms.contains(a), "missing {a}");
    }
    for (name, a) in of_type(&t, "AWS::CloudWatch::Alarm") {
        let actions = serde_yaml_ng::to_string(&a["Properties"]["AlarmActions"]).unwrap();
        assert!(
            actions.contains("AlarmsTopic"),
            "{name} does not reach cost-alarm"
        );
    }
    assert_eq!(of_type(&t, "AWS::CloudWatch::Dashboard").len(), 1);
    let schedule = &resources(&t)
        .into_iter()
        .find(|(n, _)| n == "CostAlarmFunction")
        .unwrap()
        .1["Properties"]["Events"]["Schedule"];
    assert_eq!(
        schedule["Properties"]["ScheduleExpression"],
        "rate(5 minutes)"
    );
    for output in ["ApiUrl", "StreamUrl", "BatchQueueUrl"] {
        assert!(
            t["Outputs"].get(output).is_some(),
            "missing output {output}"
        );
    }
    let params = of_type(&t, "AWS::SSM::Parameter");
    assert_eq!(params.len(), 3, "routing, pricing, budgets");
    let url = quarry_testkit::template::resource(&t, "ChatStreamFunctionUrl");
    assert_eq!(url["Properties"]["InvokeMode"], "RESPONSE_STREAM");
}

#[test]
fn the_edges_are_closed_streaming_url_concurrency_keys_and_queues() {
    let t = template();
    let all = resources(&t);
    let get = |n: &str| all.iter().find(|(k, _)| k == n).unwrap().1.clone();

    // The streaming Function URL: NONE only with Quarry's own API keys (which it checks as
    // the API does); SigV4 otherwise, with Quarry reading the IAM caller; streamed chat only.
    let stream = get("ChatStreamFunction");
    let url = &get("ChatStreamFunctionUrl")["Properties"];
    assert_eq!(url["TargetFunctionArn"]["Ref"], "ChatStreamFunction");
    assert_eq!(
        url["AuthType"]["Fn::If"],
        serde_yaml_ng::from_str::<Value>("[ApiKeyAuth, NONE, AWS_IAM]").unwrap()
    );
    let env = &stream["Properties"]["Environment"]["Variables"];
    assert_eq!(env["QUARRY_RESPONSE_STREAMING"], "true");
    assert_eq!(
        env["QUARRY_AUTH_MODE"]["Fn::If"],
        serde_yaml_ng::from_str::<Value>("[ApiKeyAuth, api_key, iam]").unwrap()
    );

    // Every function has its reserved concurrency (a parameter; 0 turns it off), except the
    // bulk tracker, which is one run at a time by design.
    for (name, function) in of_type(&t, "AWS::Serverless::Function") {
        if name == "BulkTrackerFunction" {
            assert_eq!(function["Properties"]["ReservedConcurrentExecutions"], 1);
            continue;
        }
        let reserved = &function["Properties"]["ReservedConcurrentExecutions"]["Fn::If"];
        let param = reserved[1]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}"));
        assert!(t["Parameters"][param].is_mapping(), "{name}: {param}");
    }

    // The key's grant to CloudWatch Logs covers the stack's log groups only, and to
    // CloudWatch alarms the stack's alarms only.
    let key = get("QuarryKey");
    let text = serde_yaml_ng::to_string(&key).unwrap();
    assert!(!text.contains("log-group:*"), "{text}");
    assert!(text.contains("log-group:/quarry/${Stage}/*"));
    assert!(text.contains("alarm:quarry-${Stage}-*"));
    for (_, group) in of_type(&t, "AWS::Logs::LogGroup") {
        let name = serde_yaml_ng::to_string(&group["Properties"]["LogGroupName"]).unwrap();
        assert!(name.contains("/quarry/${Stage}/"), "{name}");
    }

    // Who may send: the batch queue this account (or the listed producers) only, TLS only;
    // the spill queue (usage records, money) only the functions that charge.
    let policies = of_type(&t, "AWS::SQS::QueuePolicy");
    let policy_of = |queue: &str| {
        policies
            .iter()
            .find(|(_, p)| p["Properties"]["Queues"][0]["Ref"] == queue)
            .unwrap_or_else(|| panic!("no policy for {queue}"))
            .1
            .clone()
    };
    let batch = serde_yaml_ng::to_string(&policy_of("BatchQueue")).unwrap();
    assert!(batch.contains("aws:SecureTransport") && batch.contains("aws:PrincipalAccount"));
    assert!(batch.contains("BatchProducerArns"));
    let spill = serde_yaml_ng::to_string(&policy_of("LedgerSpillQueue")).unwrap();
    for role in [
        "ChatFunctionRole",
        "ChatStreamFunctionRole",
        "BatchWorkerFunctionRole",
    ] {
        assert!(spill.contains(role), "{role}: {spill}");
    }
    assert!(!spill.contains("CacheLookupFunctionRole") && !spill.contains("CostAlarmFunctionRole"));
}

#[test]
fn the_batch_bucket_is_private_encrypted_expiring_and_only_bedrocks_jobs_use_its_role() {
    let t = template();
    let find = |name: &str| {
        resources(&t)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    };
    let bucket = find("BatchFilesBucket");
    let p = &bucket["Properties"];
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"];
    assert_eq!(sse["SSEAlgorithm"], "aws:kms");
    assert!(
        serde_yaml_ng::to_string(&sse["KMSMasterKeyID"])
            .unwrap()
            .contains("QuarryKey")
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(p["PublicAccessBlockConfiguration"][flag], true, "{flag}");
    }
    let rule = &p["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Status"], "Enabled");
    assert!(
        serde_yaml_ng::to_string(&rule["ExpirationInDays"])
            .unwrap()
            .contains("BatchFilesRetentionDays")
    );
    let policy = find("BatchFilesBucketPolicy");
    let deny = &policy["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");

    let role = find("BedrockBatchRole");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "bedrock.amazonaws.com");
    assert!(trust["Condition"]["StringEquals"]["aws:SourceAccount"].is_mapping());
    // Only this account's batch inference jobs may assume it.
    let source = serde_yaml_ng::to_string(&trust["Condition"]["ArnLike"]["aws:SourceArn"]).unwrap();
    assert!(source.contains(":model-invocation-job/"), "{source}");
    for st in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap()
    {
        let actions = strings(&st["Action"]);
        assert!(actions.iter().all(|a| !a.ends_with('*')), "{actions:?}");
        let resource = serde_yaml_ng::to_string(&st["Resource"]).unwrap();
        if actions.iter().any(|a| a.starts_with("s3:")) {
            assert!(resource.contains("BatchFilesBucket"), "{resource}");
        }
    }
    // The functions learn the bucket and the role from the environment.
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert!(globals["QUARRY_BATCH_BUCKET"].is_mapping());
    assert!(globals["QUARRY_BATCH_ROLE_ARN"].is_mapping());
}

/// CloudFormation takes no function as a Join delimiter (only a string): a template that
/// has one deploys nowhere, whatever a SAM validation says.
#[test]
fn the_bulk_tracker_runs_on_a_schedule_and_may_pass_only_the_batch_role_to_bedrock() {
    let t = template();
    let find = |name: &str| {
        resources(&t)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    };
    let tracker = find("BulkTrackerFunction");
    let schedule = &tracker["Properties"]["Events"]["Schedule"];
    assert_eq!(schedule["Type"], "ScheduleV2");
    assert_eq!(tracker["Properties"]["ReservedConcurrentExecutions"], 1);
    let all = statements(&tracker);
    let sid = |s: &str| {
        all.iter()
            .find(|st| st["Sid"] == s)
            .unwrap_or_else(|| panic!("no {s}"))
            .clone()
    };
    let pass = sid("PassBatchRole");
    assert_eq!(strings(&pass["Action"]), ["iam:PassRole"]);
    let resource = serde_yaml_ng::to_string(&pass["Resource"]).unwrap();
    assert!(resource.contains("BedrockBatchRole"), "{resource}");
    let condition = serde_yaml_ng::to_string(&pass["Condition"]).unwrap();
    assert!(condition.contains("bedrock.amazonaws.com"), "{condition}");
    let jobs = sid("BatchInferenceJobs");
    assert_eq!(
        strings(&jobs["Action"]),
        [
            "bedrock:CreateModelInvocationJob",
            "bedrock:GetModelInvocationJob",
            "bedrock:StopModelInvocationJob"
        ]
    );
    let files = serde_yaml_ng::to_string(&sid("BatchFiles")["Resource"]).unwrap();
    assert!(
        files.contains("BatchFilesBucket") && files.contains("quarry-bulk/"),
        "{files}"
    );
    // No other function passes roles or starts batch jobs.
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        if name == "BulkTrackerFunction" {
            continue;
        }
        for st in statements(&f) {
            for a in strings(&st["Action"]) {
                assert!(
                    a != "iam:PassRole" && !a.contains("ModelInvocationJob"),
                    "{name}: {a}"
                );
            }
        }
    }
    // The worker keeps a bulk job's items only while it collects (a transaction check).
    let worker = statements(&find("BatchWorkerFunction"));
    assert!(worker.iter().any(|st| {
        strings(&st["Action"])
            .iter()
            .any(|a| a == "dynamodb:ConditionCheckItem")
    }));
}

#[test]
fn every_join_delimiter_is_a_plain_string() {
    fn walk(v: &Value, found: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    if k.as_str() == Some("Fn::Join")
                        && !v
                            .as_sequence()
                            .and_then(|s| s.first())
                            .is_some_and(Value::is_string)
                    {
                        found.push(serde_yaml_ng::to_string(v).unwrap_or_default());
                    }
                    walk(v, found);
                }
            }
            Value::Sequence(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&template(), &mut found);
    assert!(
        found.is_empty(),
        "Join delimiters that are not strings: {found:?}"
    );
}
