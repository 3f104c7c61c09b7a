//! The local stack itself: provisioning against moto, and the adapters reaching moto and the
//! emulator through the SDK's standard endpoint variables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use quarry_aws::bedrock::BedrockModels;
use quarry_aws::ssm::SsmParams;
use quarry_core::invoke::{Invoker, RetryPolicy};
use quarry_core::model::{Message, ModelRequest};
use quarry_core::params::parse_json;
use quarry_core::ports::ParameterStore;
use quarry_core::routing::RoutingConfig;
use quarry_testkit::Stack;

#[tokio::test]
async fn provisioned_stage_has_config_and_answers_through_the_routing() {
    let stack = Stack::start().await;
    let ssm = SsmParams::new(&stack.sdk);
    let routing: RoutingConfig = parse_json(
        &ssm.get(&stack.settings.param("routing"), false)
            .await
            .unwrap(),
    )
    .unwrap();
    let route = routing.route(None).unwrap();
    let invoker = Invoker::new(
        Arc::new(BedrockModels::new(&stack.sdk)),
        RetryPolicy::default(),
    );
    let request = ModelRequest {
        messages: vec![Message::user("hello")],
        ..Default::default()
    };
    let out = invoker
        .invoke(
            &route.chain,
            &request,
            tokio::time::Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(!out.response.text().is_empty());
    assert_eq!(out.target.invoke_id, route.chain[0].invoke_id);
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("Converse"), Some(&route.chain[0].base_id)),
        1
    );
    assert!(
        stack
            .provisioned
            .batch_queue_url
            .contains(&stack.settings.batch_queue)
    );
}
