//! `quarry cost report` against a ledger written by real requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use quarry_testkit::{Stack, json_reply};
use tower::ServiceExt;

fn quarry(stack: &Stack, args: &[&str]) -> (bool, String) {
    let args: Vec<&str> = ["report"].into_iter().chain(args.iter().copied()).collect();
    stack.cli(env!("CARGO_BIN_EXE_quarry"), &["cost"], &args)
}

/// A record the eval tenant writes directly (as `quarry eval` does).
fn eval_record(id: &str, cost_micro: u64, at_ms: i64) -> quarry_core::usage::UsageRecord {
    quarry_core::usage::UsageRecord {
        id: id.into(),
        tenant: "eval".into(),
        model: "amazon.nova-lite-v1:0".into(),
        feature: None,
        usage: quarry_core::model::TokenUsage {
            input: 10,
            output: 10,
            ..Default::default()
        },
        cost: Some(quarry_core::pricing::MicroUsd(cost_micro)),
        cached: false,
        estimated: false,
        bulk: false,
        region: None,
        provisioned: None,
        prompt: None,
        at_ms,
        service_tier: None,
        key: None,
    }
}

#[tokio::test]
async fn report_as_table_json_and_csv() {
    let stack = Stack::start().await;
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options::default(),
    ));
    let mut total = 0u64;
    for (tenant, feature) in [
        ("acme", "search"),
        ("acme", "summary"),
        ("globex", "search"),
    ] {
        let body = serde_json::json!({"messages": [{"role": "user", "content": format!("{tenant} {feature}")}], "tags": {"feature": feature}});
        let request = http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {}", stack.key(tenant)))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (_, answer) = json_reply(
            chat_handler::app(state.clone())
                .oneshot(request)
                .await
                .unwrap(),
        )
        .await;
        total += quarry_core::pricing::MicroUsd::parse_usd(answer["cost_usd"].as_str().unwrap())
            .unwrap()
            .0;
    }
    stack.settle().await;
    let (ok, out) = quarry(&stack, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("acme") && out.contains("globex") && out.contains('█'),
        "{out}"
    );
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains(&quarry_core::pricing::MicroUsd(total).to_usd_string()),
        "{out}"
    );

    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--tenant", "acme", "--by", "feature", "--json"]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["search", "summary"]);

    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--by", "model", "--csv"]);
    assert!(ok, "{out}");
    assert!(out.starts_with("tenant,key,requests"), "{out}");
    assert_eq!(
        out.lines().count(),
        3,
        "header + one model per tenant: {out}"
    );

    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--month", "2026-13"]);
    assert!(!ok && out.contains("YYYY-MM"), "{out}");
}

/// A report is the bill or an error: it fails loudly when it cannot read, names an unknown
/// tenant or stage, lists every tenant of the ledger (also those the directory no longer
/// has), gives untagged spend its own row, and shows each tenant against its budget.
#[tokio::test]
async fn a_report_is_the_bill_or_an_error() {
    let stack = Stack::start().await;
    // Unreachable: non-zero, one line naming the endpoint.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args([
            "cost",
            "report",
            "--aws-endpoint",
            "http://127.0.0.1:9",
            "--stage",
            &stack.settings.stage,
        ])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    assert!(
        err.contains("http://127.0.0.1:9") && err.contains("cannot read"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Unknown stage and tenant: said so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args([
            "cost",
            "report",
            "--aws-endpoint",
            &stack.moto_url,
            "--stage",
            "nosuchstage",
        ])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nosuchstage"),
        "{err}"
    );
    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--tenant", "nobody"]);
    assert!(!ok && out.contains("unknown tenant 'nobody'"), "{out}");

    // Spend: acme tagged and untagged, and a tenant only the ledger knows.
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options::default(),
    ));
    for body in [
        serde_json::json!({"messages": [{"role": "user", "content": "tagged"}], "tags": {"feature": "search"}}),
        serde_json::json!({"messages": [{"role": "user", "content": "untagged"}]}),
    ] {
        let request = http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {}", stack.key("acme")))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (status, _) = json_reply(
            chat_handler::app(state.clone())
                .oneshot(request)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
    }
    let ledger = quarry_aws::ledger::DynamoLedger::new(
        &stack.sdk,
        &stack.settings.usage_table,
        &stack.provisioned.spill_queue_url,
    );
    ledger
        .record_direct(&eval_record(
            "eval-run-1",
            1234,
            chrono::Utc::now().timestamp_millis(),
        ))
        .await
        .unwrap();
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    ssm.put(
        &stack.settings.param("budgets"),
        r#"{"tenants": {"acme": {"monthly_usd": "100"}}}"#,
        false,
    )
    .await
    .unwrap();

    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--json"]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let eval = rows
        .iter()
        .find(|r| r["tenant"] == "eval")
        .expect("the ledger's tenant");
    assert_eq!(eval["cost_usd"], "0.001234");
    let acme = rows.iter().find(|r| r["tenant"] == "acme").unwrap();
    assert_eq!(acme["budget_usd"], "100.000000");
    assert_eq!(acme["percent_used"], 0);
    assert_eq!(acme["state"], "ok");

    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--tenant", "acme", "--by", "feature", "--json"]);
    assert!(ok, "{out}");
    let by_feature: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = by_feature
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["search", "(untagged)"]);
    let micros = |r: &serde_json::Value| {
        quarry_core::pricing::MicroUsd::parse_usd(r["cost_usd"].as_str().unwrap())
            .unwrap()
            .0
    };
    assert_eq!(
        by_feature.iter().map(micros).sum::<u64>(),
        micros(acme),
        "the rows add up to the total"
    );
    assert_eq!(
        by_feature
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum::<u64>(),
        2
    );

    // By developer (key label): the rows add up too, unlabelled calls in their own row.
    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--tenant", "acme", "--by", "key", "--json"]);
    assert!(ok, "{out}");
    let by_key: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(!by_key.is_empty(), "{out}");
    assert_eq!(by_key.iter().map(micros).sum::<u64>(), micros(acme));
    assert_eq!(
        by_key
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum::<u64>(),
        2
    );
}

const PROVISIONED: &str = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcd1234efgh";

#[tokio::test]
async fn provisioned_capacity_is_used_first_overflows_to_on_demand_and_is_reported_apart() {
    let mut emulator = bedrock_emulator::EmulatorConfig::builtin();
    // Room for one short request a minute.
    emulator.provisioned_models.insert(
        PROVISIONED.into(),
        bedrock_emulator::provisioned::ProvisionedSpec {
            model: "amazon.nova-lite-v1:0".into(),
            tokens_per_minute: 8,
        },
    );
    let stack = Stack::start_with(quarry_testkit::Moto::shared().url(), emulator).await;
    {
        use quarry_core::ports::ParameterStore;
        let name = stack.settings.param("routing");
        let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
        let mut routing: quarry_core::routing::RoutingConfig =
            serde_json::from_str(&ssm.get(&name, false).await.unwrap().value).unwrap();
        routing.provisioned.insert(
            PROVISIONED.into(),
            serde_json::from_value(serde_json::json!({
                "base_model": "amazon.nova-lite-v1:0", "hourly_usd": "20", "tokens_per_minute": 5000
            }))
            .unwrap(),
        );
        // Listed after on-demand: capacity already paid for is still tried first.
        routing.tiers.insert(
            "pt".into(),
            vec!["amazon.nova-lite-v1:0".into(), PROVISIONED.into()],
        );
        aws_sdk_ssm::Client::new(&stack.sdk)
            .put_parameter()
            .name(name)
            .value(serde_json::to_string(&routing).unwrap())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options::default(),
    ));
    let mut models = Vec::new();
    let mut costs = Vec::new();
    for n in 0..4 {
        let body = serde_json::json!({"messages": [{"role": "user", "content": format!("Status {n}")}], "tier": "pt"});
        let request = http::Request::post("/v1/chat")
            .header("authorization", format!("Bearer {}", stack.key("acme")))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let (status, answer) = json_reply(
            chat_handler::app(state.clone())
                .oneshot(request)
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        models.push(answer["model"].as_str().unwrap().to_owned());
        costs.push(answer["cost_usd"].as_str().unwrap().to_owned());
    }
    // The provisioned model first; once at capacity, on-demand takes the overflow.
    assert_eq!(models[0], PROVISIONED);
    assert!(
        models.iter().any(|m| m == "amazon.nova-lite-v1:0"),
        "{models:?}"
    );
    for (m, c) in models.iter().zip(&costs) {
        if m == PROVISIONED {
            assert_eq!(c, "0.000000", "no per-token price on provisioned calls");
        } else {
            assert_ne!(c, "0.000000");
        }
    }
    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--provisioned", "--json"]);
    assert!(ok, "{out}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &rows[0];
    assert_eq!(row["model_arn"], PROVISIONED);
    let served = models.iter().filter(|m| *m == PROVISIONED).count() as u64;
    assert_eq!(row["requests"], served);
    assert!(row["tokens_served"].as_u64().unwrap() > 0);
    assert_eq!(row["hourly_usd"], "20.000000");
    assert!(row["token_capacity"].as_u64().unwrap() >= row["tokens_served"].as_u64().unwrap());
    stack.settle().await;
    let (ok, out) = quarry(&stack, &["--provisioned"]);
    assert!(
        ok && out.contains("Provisioned Throughput") && out.contains(PROVISIONED),
        "{out}"
    );
}

#[tokio::test]
async fn reconcile_compares_the_ledger_with_the_bill_by_tenant_tag() {
    let stack = Stack::start().await;
    let state = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        stack.settings.clone(),
        chat_handler::Options::default(),
    ));
    let body = serde_json::json!({"messages": [{"role": "user", "content": "Hello"}]});
    let request = http::Request::post("/v1/chat")
        .header("authorization", format!("Bearer {}", stack.key("acme")))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, answer) =
        json_reply(chat_handler::app(state).oneshot(request).await.unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    let ledger = answer["cost_usd"].as_str().unwrap().to_owned();
    // What Cost Explorer answers (moto serves a configured result): Bedrock spend by the
    // `tenant` tag, and some without it.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let result = serde_json::json!({"results": [{"ResultsByTime": [{
        "TimePeriod": {"Start": format!("{month}-01"), "End": format!("{month}-28")},
        "Total": {},
        "Groups": [
            {"Keys": ["tenant$acme"], "Metrics": {"UnblendedCost": {"Amount": "0.5", "Unit": "USD"}}},
            {"Keys": ["tenant$"], "Metrics": {"UnblendedCost": {"Amount": "0.2500004", "Unit": "USD"}}}
        ],
        "Estimated": true
    }]}]});
    let configured = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/ce/cost-and-usage-results",
            stack.moto_url
        ))
        .json(&result)
        .send()
        .await
        .unwrap();
    assert!(configured.status().is_success());
    stack.settle().await;
    let (ok, out) = stack.cli(
        env!("CARGO_BIN_EXE_quarry"),
        &["cost"],
        &["reconcile", "--json"],
    );
    assert!(ok, "{out}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = |t: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["tenant"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no row {t}: {rows}"))
    };
    let acme = row("acme");
    assert_eq!(acme["ledger_usd"], ledger);
    assert_eq!(acme["billed_usd"], "0.500000");
    let expected = 500_000 - quarry_core::pricing::parse_decimal_micros(&ledger).unwrap() as i64;
    assert_eq!(
        acme["difference_usd"],
        format!("{}.{:06}", expected / 1_000_000, expected % 1_000_000)
    );
    assert_eq!(row("(untagged)")["billed_usd"], "0.250000");
    assert_eq!(row("globex")["billed_usd"], "0.000000");
}

#[tokio::test]
async fn recount_counts_the_markers_the_stream_left_once() {
    let stack = Stack::start().await;
    let ledger = quarry_aws::ledger::DynamoLedger::new(
        &stack.sdk,
        &stack.settings.usage_table,
        &stack.provisioned.spill_queue_url,
    );
    // Answered an hour ago; its stream records gone uncounted.
    ledger
        .record_direct(&eval_record(
            "lost-in-the-stream",
            4321,
            chrono::Utc::now().timestamp_millis() - 3_600_000,
        ))
        .await
        .unwrap();
    let (ok, out) = stack.cli(env!("CARGO_BIN_EXE_quarry"), &["cost"], &["recount"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("1 marker(s) counted now, 0 already counted"),
        "{out}"
    );
    let (ok, out) = stack.cli(env!("CARGO_BIN_EXE_quarry"), &["cost"], &["recount"]);
    assert!(ok && out.contains("0 marker(s) counted now"), "{out}");
    // The stream delivering it after all counts nothing more.
    assert_eq!(stack.settle().await.counted, 0);
    let (ok, out) = quarry(&stack, &["--json"]);
    assert!(ok, "{out}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let eval = rows.iter().find(|r| r["tenant"] == "eval").unwrap();
    assert_eq!(eval["cost_usd"], "0.004321");
    assert_eq!(eval["requests"], 1);
}
