//! Regions: the AWS SDK signs each call for its client's region, and the emulator counts,
//! records and faults calls per region while serving every region on one URL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_bedrock::types::InferenceProfileModelSource;
use serde_json::{Value, json};

mod common;

use common::{
    HAIKU, NOVA, client_in, control_client_in, emulator, emulator_with, set_faults, user,
};

async fn admin(emu: &bedrock_emulator::RunningEmulator, path: &str) -> Value {
    reqwest::get(format!("{}/_emulator/{path}", emu.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_fault_set_for_one_region_leaves_the_others_alone() {
    let emu = emulator().await;
    let east = client_in(&emu, "us-east-1");
    let west = client_in(&emu, "us-west-2");
    set_faults(&emu, json!({"region": "us-east-1", "outage": "throttling"})).await;

    for _ in 0..2 {
        let e = east
            .converse()
            .model_id(HAIKU)
            .messages(user("hi"))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(e.is_throttling_exception(), "{e:?}");
    }
    for model in [HAIKU, NOVA] {
        west.converse()
            .model_id(model)
            .messages(user("hi"))
            .send()
            .await
            .unwrap();
    }

    let state = emu.state();
    assert_eq!(state.calls_in_region(Some("Converse"), "us-east-1"), 2);
    assert_eq!(state.calls_in_region(Some("Converse"), "us-west-2"), 2);
    assert_eq!(state.calls_in_region(None, "eu-west-1"), 0);
    assert_eq!(state.calls(Some("Converse"), Some(HAIKU)), 3);
    let recorded = state.recorded(4);
    let regions: Vec<&str> = recorded.iter().map(|r| r.region.as_str()).collect();
    assert_eq!(
        regions,
        ["us-east-1", "us-east-1", "us-west-2", "us-west-2"]
    );

    let calls = admin(&emu, "calls").await;
    assert_eq!(calls["total"], 4);
    assert_eq!(calls["regions"]["us-east-1"]["total"], 2);
    assert_eq!(
        calls["regions"]["us-east-1"]["operations"]["Converse"][HAIKU],
        json!({"calls": 2, "errors": 2})
    );
    assert_eq!(
        calls["regions"]["us-west-2"]["operations"]["Converse"][NOVA],
        json!({"calls": 1, "errors": 0})
    );
    let requests = admin(&emu, "requests?limit=1").await;
    assert_eq!(requests["requests"][0]["region"], "us-west-2");
    let faults = admin(&emu, "faults").await;
    assert_eq!(
        faults["regions"]["us-east-1"]["*"]["outage"],
        "ThrottlingException"
    );
    assert_eq!(faults["faults"], json!({}));

    // Clearing faults clears every region's.
    let r = reqwest::Client::new()
        .delete(format!("{}/_emulator/faults", emu.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    east.converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_regional_fault_can_name_a_model_and_counts_down() {
    let emu = emulator().await;
    let east = client_in(&emu, "us-east-1");
    let west = client_in(&emu, "us-west-2");
    set_faults(
        &emu,
        json!({"region": "us-west-2", "model": NOVA, "throttle_next": 1}),
    )
    .await;
    // Another region, another model: untouched.
    east.converse()
        .model_id(NOVA)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    west.converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    let e = west
        .converse()
        .model_id(NOVA)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_throttling_exception(), "{e:?}");
    west.converse()
        .model_id(NOVA)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();

    // A regional fault and a global one both apply to that region's calls.
    set_faults(&emu, json!({"model": HAIKU, "throttle_next": 1})).await;
    let e = east
        .converse()
        .model_id(HAIKU)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(e.is_throttling_exception(), "{e:?}");
}

#[tokio::test]
async fn unsigned_calls_count_under_the_configured_region() {
    let emu = emulator_with("region: eu-west-1\n").await;
    let r = reqwest::Client::new()
        .post(format!("{}/model/{NOVA}/converse", emu.url()))
        .json(&json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(
        emu.state().calls_in_region(Some("Converse"), "eu-west-1"),
        1
    );
    assert_eq!(emu.state().recorded(1)[0].region, "eu-west-1");
}

#[tokio::test]
async fn profiles_are_created_in_the_callers_region() {
    let emu = emulator().await;
    let control = control_client_in(&emu, "us-west-2");
    let created = control
        .create_inference_profile()
        .inference_profile_name("west")
        .model_source(InferenceProfileModelSource::CopyFrom(format!(
            "arn:aws:bedrock:us-west-2::foundation-model/{NOVA}"
        )))
        .send()
        .await
        .unwrap();
    let arn = created.inference_profile_arn();
    assert!(
        arn.starts_with("arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/"),
        "{arn}"
    );
    let west = client_in(&emu, "us-west-2");
    west.converse()
        .model_id(arn)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    let calls = admin(&emu, "calls").await;
    assert_eq!(calls["profiles"][arn]["Converse"]["calls"], 1);
    assert_eq!(
        calls["regions"]["us-west-2"]["operations"]["CreateInferenceProfile"]["west"]["calls"],
        1
    );
}
