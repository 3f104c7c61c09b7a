//! Routing: tiers, targets, regions, residency and provisioned capacity.

use super::*;

fn config() -> RoutingConfig {
    serde_json::from_value(serde_json::json!({
        "default_tier": "fast",
        "tiers": {
            "fast": ["us.anthropic.claude-3-5-haiku-20241022-v1:0", "amazon.nova-lite-v1:0"],
            "smart": ["arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/p1"]
        },
        "models": {
            "anthropic.claude-3-5-haiku-20241022-v1:0": {"context_window": 200000, "max_output_tokens": 8192, "prompt_caching": true},
            "amazon.nova-lite-v1:0": {"context_window": 300000, "max_output_tokens": 10000}
        },
        "application_inference_profiles": {
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/p1": "anthropic.claude-3-5-haiku-20241022-v1:0"
        }
    }))
    .unwrap()
}

#[test]
fn tiers_resolve_to_chains_with_base_models() {
    let c = config();
    c.validate().unwrap();
    let route = c.route(None).unwrap();
    assert_eq!(route.tier.as_deref(), Some("fast"));
    assert_eq!(route.chain.len(), 2);
    assert_eq!(
        route.chain[0].base_id,
        "anthropic.claude-3-5-haiku-20241022-v1:0"
    );
    assert_eq!(
        route.chain[0].invoke_id,
        "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    );
    let smart = c.route(Some(&RouteSpec::Tier("smart".into()))).unwrap();
    assert_eq!(
        smart.chain[0].base_id,
        "anthropic.claude-3-5-haiku-20241022-v1:0"
    );
}

#[test]
fn model_ids_profiles_and_arns_map_to_base_models() {
    let c = config();
    for id in [
        "amazon.nova-lite-v1:0",
        "eu.amazon.nova-lite-v1:0",
        "global.amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
    ] {
        let r = c.route(Some(&RouteSpec::Model(id.into()))).unwrap();
        assert_eq!(r.chain[0].base_id, "amazon.nova-lite-v1:0", "{id}");
        assert_eq!(r.chain[0].invoke_id, id);
        assert_eq!(r.tier, None);
    }
}

#[test]
fn a_model_named_like_a_tier_is_the_tier() {
    let r = config()
        .route(Some(&RouteSpec::Model("smart".into())))
        .unwrap();
    assert_eq!(r.tier.as_deref(), Some("smart"));
}

#[test]
fn identifiers_not_shaped_like_bedrocks_are_refused() {
    for ok in [
        "amazon.nova-lite-v1:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
    ] {
        assert!(check_model_id(ok).is_ok(), "{ok}");
    }
    let long = "a".repeat(300);
    for bad in [
        "",
        long.as_str(),
        "amazon.nova lite",
        "amazon.nova/../x",
        "ａｍａｚｏｎ.nova",
        "arn:aws:bedrock:us-east-1:123456789012:foundation-model/amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1::inference-profile/us.x",
        "arn:aws:s3:us-east-1::foundation-model/x",
        "arn:aws:bedrock:US-EAST-1::foundation-model/x",
        "arn:aws:bedrock:us-east-1:12345:inference-profile/x",
        "arn:aws:bedrock:us-east-1::thing/x",
    ] {
        let e = check_model_id(bad).unwrap_err();
        assert!(e.to_string().len() < 600, "the error stays short: {e}");
    }
}

#[test]
fn unknown_names_are_clear_errors() {
    let c = config();
    let e = c.route(Some(&RouteSpec::Tier("cheap".into()))).unwrap_err();
    assert!(e.to_string().contains("fast, smart"));
    assert!(matches!(
        c.route(Some(&RouteSpec::Model("xx.amazon.nova-lite-v1:0".into()))),
        Err(RoutingError::UnknownModel(_))
    ));
}

#[test]
fn invalid_config_is_detected() {
    let mut c = config();
    c.tiers.insert("empty".into(), vec![]);
    assert!(c.validate().is_err());
    let mut c = config();
    c.default_tier = "nope".into();
    assert!(c.validate().is_err());
}

fn regional() -> RoutingConfig {
    serde_json::from_value(serde_json::json!({
        "default_tier": "fast",
        "home_region": "us-east-1",
        "tiers": {
            "fast": ["amazon.nova-lite-v1:0", "us.anthropic.claude-3-5-haiku-20241022-v1:0"],
            "eu": [
                {"model": "eu.anthropic.claude-3-5-haiku-20241022-v1:0", "region": "eu-central-1"},
                {"model": "amazon.nova-lite-v1:0", "region": "eu-west-1"},
                "amazon.nova-lite-v1:0"
            ]
        },
        "tier_regions": {"fast": ["us-east-1", "us-west-2"]},
        "models": {
            "anthropic.claude-3-5-haiku-20241022-v1:0": {"context_window": 200000, "max_output_tokens": 8192},
            "amazon.nova-lite-v1:0": {"context_window": 300000, "max_output_tokens": 10000}
        }
    }))
    .unwrap()
}

#[test]
fn tier_regions_try_a_model_in_each_region_before_the_next_model() {
    let c = regional();
    c.validate().unwrap();
    let fast = c.route(None).unwrap();
    let placed: Vec<(String, Option<String>)> = fast
        .chain
        .iter()
        .map(|t| (t.invoke_id.clone(), t.region.clone()))
        .collect();
    assert_eq!(
        placed,
        [
            ("amazon.nova-lite-v1:0".into(), Some("us-east-1".into())),
            ("amazon.nova-lite-v1:0".into(), Some("us-west-2".into())),
            // A cross-region profile is called as it is.
            ("us.anthropic.claude-3-5-haiku-20241022-v1:0".into(), None),
        ]
    );
    assert_ne!(fast.chain[0].key(), fast.chain[1].key());
    let eu = c.route(Some(&RouteSpec::Tier("eu".into()))).unwrap();
    assert_eq!(eu.chain[0].region.as_deref(), Some("eu-central-1"));
    assert_eq!(eu.chain[1].region.as_deref(), Some("eu-west-1"));
    assert_eq!(eu.chain[2].region, None);
}

#[test]
fn regions_are_checked_when_the_configuration_is_read() {
    let mut c = regional();
    c.tier_regions
        .insert("fast".into(), vec!["moon-base-1a".into()]);
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("moon-base-1a")
    );
    let mut c = regional();
    c.tier_regions
        .insert("nope".into(), vec!["us-east-1".into()]);
    assert!(c.validate().is_err());
    let bad: Result<RoutingConfig, _> = serde_json::from_value(serde_json::json!({
        "default_tier": "t", "models": {},
        "tiers": {"t": [{"model": "m", "region": "us-east-1", "zone": "a"}]}
    }));
    assert!(bad.is_err(), "unknown fields in a chain entry are refused");
}

#[test]
fn an_eu_only_tenant_keeps_only_what_the_eu_serves_or_is_refused() {
    let c = regional();
    let eu_only = Residency {
        regions: vec![],
        geographies: vec!["eu".into()],
    };
    let mut eu = c.route(Some(&RouteSpec::Tier("eu".into()))).unwrap();
    eu.restrict(&eu_only, c.home_region.as_deref(), "t")
        .unwrap();
    // The model named without a region is served at home (us-east-1): dropped.
    assert_eq!(eu.chain.len(), 2);
    let mut fast = c.route(None).unwrap();
    let e = fast
        .restrict(&eu_only, c.home_region.as_deref(), "t")
        .unwrap_err();
    assert!(matches!(e, RoutingError::Residency(_)));
    assert!(e.to_string().contains("eu (geography)"), "{e}");
    // No rule: nothing removed.
    let mut fast = c.route(None).unwrap();
    fast.restrict(&Residency::default(), None, "t").unwrap();
    assert_eq!(fast.chain.len(), 3);
}

#[test]
fn provisioned_models_resolve_to_their_base_and_come_first() {
    let pt = "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abcd1234efgh";
    let mut c = regional();
    c.provisioned.insert(
        pt.into(),
        serde_json::from_value(serde_json::json!({
            "base_model": "amazon.nova-lite-v1:0", "hourly_usd": "20", "tokens_per_minute": 5000
        }))
        .unwrap(),
    );
    c.tiers
        .insert("pt".into(), vec!["amazon.nova-lite-v1:0".into(), pt.into()]);
    c.validate().unwrap();
    let route = c.route(Some(&RouteSpec::Tier("pt".into()))).unwrap();
    assert_eq!(route.chain[0].invoke_id, pt);
    assert_eq!(route.chain[0].base_id, "amazon.nova-lite-v1:0");
    assert!(is_provisioned(pt) && !is_provisioned("amazon.nova-lite-v1:0"));
    // Its capacity is what utilisation is measured against: it must be given.
    let mut bad = c.clone();
    if let Some(p) = bad.provisioned.get_mut(pt) {
        p.tokens_per_minute = 0;
    }
    assert!(bad.validate().is_err());
    let mut unknown = c.clone();
    if let Some(p) = unknown.provisioned.get_mut(pt) {
        p.base_model = "nope".into();
    }
    assert!(unknown.validate().is_err());
}
