//! cost-alarm with the SNS (CloudWatch alarm) and EventBridge schedule events of `events/`,
//! every alarm state, and malformed messages: the invocation never fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cost_alarm::{CostAlarm, Trigger};
use quarry_testkit::{Stack, event};
use serde_json::{Value, json};

#[tokio::test]
async fn sample_events_every_alarm_state_and_garbage_are_handled() {
    let stack = Stack::start().await;
    let alarm = CostAlarm::from_sdk(&stack.sdk, &stack.settings);
    let now = chrono::Utc::now();

    let e: Value = serde_json::from_str(&event("sns-cloudwatch-alarm.json")).unwrap();
    let summary = alarm.handle(&e, now).await;
    match &summary.triggers[..] {
        [Trigger::Alarm(a)] => {
            assert_eq!(
                (
                    a.alarm_name.as_str(),
                    a.new_state.as_str(),
                    a.old_state.as_deref()
                ),
                ("quarry-dev-spend-rate", "ALARM", Some("OK"))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(
        summary.tenants.iter().any(|t| t.tenant == "acme"),
        "budgets were evaluated on the alarm"
    );

    let e: Value = serde_json::from_str(&event("eventbridge-schedule.json")).unwrap();
    let summary = alarm.handle(&e, now).await;
    assert_eq!(
        summary.triggers,
        vec![Trigger::Schedule {
            time: Some("2026-11-21T21:00:00Z".into())
        }]
    );

    for state in ["ALARM", "OK", "INSUFFICIENT_DATA"] {
        let message = json!({"AlarmName": "quarry-dev-throttles", "NewStateValue": state, "OldStateValue": "OK"}).to_string();
        let e = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": message}}]});
        let summary = alarm.handle(&e, now).await;
        assert!(matches!(&summary.triggers[0], Trigger::Alarm(a) if a.new_state == state));
    }
    for garbage in [
        json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "not json"}}]}),
        json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{\"foo\": 1}"}}]}),
        json!({"Records": [{"EventSource": "aws:sns", "Sns": {}}]}),
        json!({"Records": [{"EventSource": "aws:s3"}]}),
        json!({"Records": "nope"}),
        json!(null),
        json!([1, 2, 3]),
    ] {
        let summary = alarm.handle(&garbage, now).await;
        assert!(
            summary
                .triggers
                .iter()
                .all(|t| matches!(t, Trigger::Malformed { .. } | Trigger::Unknown)),
            "{garbage}: {:?}",
            summary.triggers
        );
    }
}
