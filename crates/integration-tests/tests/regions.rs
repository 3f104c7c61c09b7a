//! Regions in routing, end to end through the chat API: a tier placed in regions, and a
//! tenant limited to the EU that is served only there, refused with a typed error when its
//! route has no EU model, and given a typed 503 (never a move abroad) when every EU target
//! throttles. The ledger records the region that served each call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::{add_tenant, chat, edit_routing, fault, options, state};
use quarry_core::routing::{ChainEntry, Placed};
use quarry_testkit::Stack;
use serde_json::json;

const NOVA: &str = "amazon.nova-lite-v1:0";

fn placed(region: &str) -> ChainEntry {
    ChainEntry::Placed(Placed {
        model: NOVA.into(),
        region: region.into(),
    })
}

/// The regions the ledger recorded for a tenant's calls.
async fn ledger_regions(stack: &Stack, tenant: &str) -> Vec<String> {
    let out = aws_sdk_dynamodb::Client::new(&stack.sdk)
        .scan()
        .table_name(&stack.settings.usage_table)
        .filter_expression("sk = :rec AND tenant = :t")
        .expression_attribute_values(":rec", AttributeValue::S("REC".into()))
        .expression_attribute_values(":t", AttributeValue::S(tenant.into()))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|i| {
            i.get("region")
                .and_then(|r| r.as_s().ok())
                .cloned()
                .unwrap_or_else(|| "home".into())
        })
        .collect()
}

#[tokio::test]
async fn an_eu_only_tenant_is_served_in_the_eu_refused_elsewhere_and_never_moved_abroad() {
    let stack = Stack::start().await;
    edit_routing(&stack, |r| {
        r.home_region = Some("us-east-1".into());
        r.tiers.insert(
            "eu".into(),
            vec![placed("eu-central-1"), placed("eu-west-1"), NOVA.into()],
        );
    })
    .await;
    let key = add_tenant(
        &stack,
        "eu-co",
        json!({"allowed_tiers": ["*"], "residency": {"geographies": ["eu"]}}),
    )
    .await;
    let app = state(&stack, options());
    let ask =
        |tier: &str| json!({"messages": [{"role": "user", "content": "Hello"}], "tier": tier});

    // The default tier serves from the US only: refused, with the rule named.
    let refused = chat(&app, &key, ask("fast")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.body["error"]["type"], "region_not_allowed");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("eu (geography)")
    );

    // The EU tier: served in the EU (the call was signed for, and went to, eu-central-1),
    // recorded so.
    let served = chat(&app, &key, ask("eu")).await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(ledger_regions(&stack, "eu-co").await, ["eu-central-1"]);
    assert_eq!(
        stack
            .emulator
            .state()
            .calls_in_region(Some("Converse"), "eu-central-1"),
        1
    );

    // Every EU target throttles: a typed 503, and the home-region model of the same tier is
    // never called for this tenant.
    fault(&stack, NOVA, |f| {
        f.outage = Some(bedrock_emulator::ErrorKind::ThrottlingException)
    });
    let before = stack.emulator.state().calls(Some("Converse"), None);
    let unavailable = chat(&app, &key, ask("eu")).await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.body);
    assert_eq!(unavailable.body["error"]["type"], "models_unavailable");
    let tried = unavailable.body["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tried.contains(NOVA), "{tried}");
    assert!(stack.emulator.state().calls(Some("Converse"), None) > before);
    assert_eq!(ledger_regions(&stack, "eu-co").await, ["eu-central-1"]);

    // A tenant without a rule may use the same tier's home-region model.
    let anywhere = chat(&app, stack.key("acme"), ask("eu")).await;
    assert_eq!(
        anywhere.status, 503,
        "the outage is the model's everywhere here"
    );
}

#[tokio::test]
async fn a_region_outage_moves_traffic_to_the_next_region_and_back_when_it_recovers() {
    let stack = Stack::start().await;
    edit_routing(&stack, |r| {
        r.tiers.insert("regional".into(), vec![NOVA.into()]);
        r.tier_regions.insert(
            "regional".into(),
            vec!["us-east-1".into(), "us-west-2".into()],
        );
    })
    .await;
    let mut opts = options();
    opts.retry.breaker_threshold = 2;
    opts.retry.breaker_cooldown = std::time::Duration::from_millis(1500);
    let app = state(&stack, opts);
    let key = stack.key("acme").to_owned();
    let ask = json!({"messages": [{"role": "user", "content": "Hello"}], "tier": "regional"});
    let state_of = || stack.emulator.state();

    stack
        .emulator
        .state()
        .update_region_faults("us-east-1", |f| {
            f.entry(NOVA.into()).or_default().outage =
                Some(bedrock_emulator::ErrorKind::ThrottlingException);
        });
    // Served from the next region of the same model, well within the deadline.
    let started = std::time::Instant::now();
    let moved = chat(&app, &key, ask.clone()).await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(state_of().calls_in_region(Some("Converse"), "us-west-2"), 1);
    // The breaker of nova in us-east-1 is open: the next requests go straight there.
    let throttled_before = state_of().calls_in_region(Some("Converse"), "us-east-1");
    for _ in 0..3 {
        assert_eq!(chat(&app, &key, ask.clone()).await.status, 200);
    }
    assert_eq!(
        state_of().calls_in_region(Some("Converse"), "us-east-1"),
        throttled_before
    );
    assert_eq!(state_of().calls_in_region(Some("Converse"), "us-west-2"), 4);
    // The region recovers; after the cooldown, traffic goes back to it.
    stack.emulator.state().clear_faults();
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert_eq!(chat(&app, &key, ask.clone()).await.status, 200);
    assert_eq!(
        state_of().calls_in_region(Some("Converse"), "us-east-1"),
        throttled_before + 1
    );
    assert_eq!(ledger_regions(&stack, "acme").await.len(), 5);
}
