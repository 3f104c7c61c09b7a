//! cost-alarm with the SNS (CloudWatch alarm) and EventBridge schedule events of `events/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cost_alarm::{Trigger, handle};
use quarry_testkit::event;
use serde_json::Value;

#[tokio::test]
async fn sns_alarm_event_is_understood() {
    let e: Value = serde_json::from_str(&event("sns-cloudwatch-alarm.json")).unwrap();
    let summary = handle(&e).await;
    match &summary.triggers[..] {
        [Trigger::Alarm(a)] => {
            assert_eq!(a.alarm_name, "quarry-dev-spend-rate");
            assert_eq!(a.new_state, "ALARM");
            assert_eq!(a.old_state.as_deref(), Some("OK"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn schedule_event_is_understood() {
    let e: Value = serde_json::from_str(&event("eventbridge-schedule.json")).unwrap();
    let summary = handle(&e).await;
    assert_eq!(
        summary.triggers,
        vec![Trigger::Schedule {
            time: Some("2026-11-21T21:00:00Z".into())
        }]
    );
}
