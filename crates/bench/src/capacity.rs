//! The ledger under the capacity model (`quarry_testkit::capacity`): one tenant's requests,
//! half of them cache hits, answered by several warm instances at once (each its own
//! process state, one request at a time, as Lambda runs them), with every DynamoDB write
//! recorded; then the stream aggregated. Run for today's design and for the one before
//! markers and shards ([`crate::legacy`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_handler::{AppState, HandlerPorts, Options};
use quarry_aws::ledger::{Aggregated, Buckets, LedgerReader, Totals, month_pk};
use quarry_core::pricing::MicroUsd;
use quarry_testkit::capacity::{CapacityProxy, Report};
use quarry_testkit::{Moto, Stack};

use crate::legacy::{LegacyAdmission, LegacyCacheStats, LegacyLedger};

/// The tenant under load.
pub const TENANT: &str = "hot";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// One transaction per request on the tenant's counters, one rate item, one statistics
    /// item.
    Before,
    /// Markers aggregated from the stream into sharded counters, leased rate slices,
    /// sharded statistics.
    Markers,
}

/// What one run measured.
pub struct Run {
    pub report: Report,
    /// Answers (all 200) and the sum of the costs they reported.
    pub answered: u64,
    pub answered_cost: MicroUsd,
    pub cache_hits: u64,
    /// The tenant's month in the ledger once aggregated.
    pub ledger: Totals,
    /// The aggregation: what it counted, and the changes it had to leave for a retry.
    pub aggregated: Aggregated,
    pub aggregation_failures: usize,
    /// Wall time of the requests (moto's own speed, not the model's).
    pub wall: Duration,
}

/// Runs `requests` requests over `instances` instances; with `fail_midway`, DynamoDB fails
/// the aggregation's third transaction (every retry of it) and the stream delivers again.
pub async fn run(
    design: Design,
    requests: usize,
    instances: usize,
    fail_midway: bool,
) -> Result<Run, String> {
    let moto = Moto::shared();
    let proxy = CapacityProxy::start(moto.url()).await;
    let stack = Stack::start_custom(
        moto.url(),
        bedrock_emulator::EmulatorConfig::builtin(),
        &[("AWS_ENDPOINT_URL_DYNAMODB", proxy.url())],
    )
    .await;
    let key = hot_tenant(&stack).await?;
    let options = Options {
        config_max_age: Duration::from_secs(300),
        ..Options::default()
    };
    let states: Vec<Arc<AppState>> = (0..instances)
        .map(|_| Arc::new(instance(&stack, design, options.clone())))
        .collect();
    let started = Instant::now();
    let mut lanes = Vec::new();
    for (lane, state) in states.into_iter().enumerate() {
        let key = key.clone();
        lanes.push(tokio::spawn(async move {
            let mut out = (0u64, 0u64, 0u64);
            let answered = |status: u16, reply: &serde_json::Value| {
                (status == 200)
                    .then_some(())
                    .ok_or_else(|| format!("a request failed ({status}): {reply}"))
            };
            for i in (lane..requests).step_by(instances) {
                // Even requests ask one of ten questions (cache hits after the first);
                // odd ones are new.
                let body = if i % 2 == 0 {
                    serde_json::json!({"messages": [{"role": "user", "content": format!("popular question {}", i % 10)}], "temperature": 0})
                } else {
                    serde_json::json!({"messages": [{"role": "user", "content": format!("question {i}")}], "temperature": 0.5})
                };
                let (status, reply, _) = crate::chat_in_process(&state, &key, &body).await;
                answered(status, &reply)?;
                let cost = reply["cost_usd"].as_str().unwrap_or("0");
                out.0 += 1;
                out.1 += MicroUsd::parse_usd(cost).map_or(0, |c| c.0);
                out.2 += u64::from(reply["cached"] == true);
            }
            Ok::<_, String>(out)
        }));
    }
    let (mut answered, mut cost, mut hits) = (0, 0, 0);
    for lane in lanes {
        let (a, c, h) = lane.await.map_err(|e| e.to_string())??;
        answered += a;
        cost += c;
        hits += h;
    }
    let wall = started.elapsed();
    let request_path = proxy.writes().len();
    let mut aggregated = Aggregated::default();
    let mut failures = 0;
    if design == Design::Markers {
        if fail_midway {
            proxy.fail_transactions(2, 100);
        }
        // As Lambda does: deliver again from the first change not counted, until none is left.
        for _ in 0..10 {
            let done = stack
                .ledger_stream
                .drain(500)
                .await
                .map_err(|e| e.to_string())?;
            aggregated.counted += done.counted;
            aggregated.already += done.already;
            failures += done.failed.len();
            if done.failed.is_empty() {
                break;
            }
            proxy.fail_transactions(0, 0);
        }
    }
    let month = Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let ledger = LedgerReader::new(&stack.sdk, &stack.settings.usage_table)
        .get(&month_pk(TENANT, &month), "TOTAL")
        .await
        .map_err(|e| e.to_string())?;
    Ok(Run {
        report: Report::of(&proxy.writes(), request_path, answered, 1_000.0),
        answered,
        answered_cost: MicroUsd(cost),
        cache_hits: hits,
        ledger,
        aggregated,
        aggregation_failures: failures,
        wall,
    })
}

/// One warm instance: its own ports (so its own budget cache and rate slices).
fn instance(stack: &Stack, design: Design, options: Options) -> AppState {
    let sdk_ports = quarry_aws::ports_from_sdk(&stack.sdk, &stack.settings)
        .with_budget_max_age(options.budget_max_age);
    let ports = HandlerPorts::from_sdk_ports(&sdk_ports);
    let ports = match design {
        Design::Markers => ports,
        Design::Before => {
            let client = aws_sdk_dynamodb::Client::new(&stack.sdk);
            HandlerPorts {
                ledger: Arc::new(LegacyLedger {
                    client: client.clone(),
                    table: stack.settings.usage_table.clone(),
                }),
                admission: Arc::new(LegacyAdmission {
                    budgets: ports.admission.clone(),
                    client: client.clone(),
                    table: stack.settings.usage_table.clone(),
                }),
                cache: Arc::new(LegacyCacheStats {
                    cache: ports.cache.clone(),
                    client,
                    table: stack.settings.cache_table.clone(),
                }),
                ..ports
            }
        }
    };
    AppState::with_ports(ports, stack.settings.clone(), options)
}

/// The tenant under load, with rate limits far above the load (counted, never reached).
async fn hot_tenant(stack: &Stack) -> Result<String, String> {
    use quarry_core::ports::ParameterStore;
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    let p = ssm
        .get(&stack.settings.param("tenants"), true)
        .await
        .map_err(|e| format!("tenant directory: {e}"))?;
    let mut dir: quarry_core::tenancy::TenantDirectory =
        serde_json::from_str(&p.value).map_err(|e| format!("tenant directory: {e}"))?;
    let policy = serde_json::json!({"rate_limits": {"requests_per_minute": 10_000_000, "tokens_per_minute": 10_000_000_000u64}});
    dir.tenants.insert(
        TENANT.to_owned(),
        serde_json::from_value(policy).map_err(|e| format!("policy: {e}"))?,
    );
    let key = quarry_admin::tenants::new_api_key();
    dir.keys.insert(
        quarry_core::tenancy::hash_key(&key),
        quarry_core::tenancy::KeyEntry {
            tenant: TENANT.to_owned(),
            admin: false,
            operator: false,
            label: None,
        },
    );
    quarry_admin::tenants::write(&ssm, &stack.settings, &dir)
        .await
        .map_err(|e| format!("tenant directory: {e}"))?;
    Ok(key)
}
