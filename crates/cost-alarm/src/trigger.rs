//! What invoked cost-alarm: the EventBridge schedule, an SNS message carrying a CloudWatch
//! alarm state change, or something it does not understand (logged, never a failure).

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trigger {
    Schedule {
        time: Option<String>,
    },
    Alarm(AlarmChange),
    /// An SNS record whose message is not a CloudWatch alarm.
    Malformed {
        reason: String,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmChange {
    pub alarm_name: String,
    /// ALARM, OK or INSUFFICIENT_DATA.
    pub new_state: String,
    pub old_state: Option<String>,
    pub reason: Option<String>,
}

/// Every trigger in an event (an SNS event may carry several records).
pub fn classify(event: &Value) -> Vec<Trigger> {
    if event.get("source").and_then(Value::as_str) == Some("aws.events")
        || event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
    {
        return vec![Trigger::Schedule {
            time: event.get("time").and_then(Value::as_str).map(str::to_owned),
        }];
    }
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        return vec![Trigger::Unknown];
    };
    records.iter().map(sns_record).collect()
}

fn sns_record(record: &Value) -> Trigger {
    if record.get("EventSource").and_then(Value::as_str) != Some("aws:sns") {
        return Trigger::Malformed {
            reason: "record is not from SNS".into(),
        };
    }
    let Some(message) = record.pointer("/Sns/Message").and_then(Value::as_str) else {
        return Trigger::Malformed {
            reason: "SNS record has no Message".into(),
        };
    };
    let parsed: Value = match serde_json::from_str(message) {
        Ok(v) => v,
        Err(e) => {
            return Trigger::Malformed {
                reason: format!("SNS message is not JSON: {e}"),
            };
        }
    };
    let s = |k: &str| parsed.get(k).and_then(Value::as_str).map(str::to_owned);
    match (s("AlarmName"), s("NewStateValue")) {
        (Some(alarm_name), Some(new_state)) => Trigger::Alarm(AlarmChange {
            alarm_name,
            new_state,
            old_state: s("OldStateValue"),
            reason: s("NewStateReason"),
        }),
        _ => Trigger::Malformed {
            reason: "SNS message is not a CloudWatch alarm state change".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedule_alarm_and_garbage() {
        assert!(matches!(
            classify(&json!({"source": "aws.events", "detail-type": "Scheduled Event"}))[0],
            Trigger::Schedule { .. }
        ));
        let alarm = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{\"AlarmName\":\"a\",\"NewStateValue\":\"ALARM\"}"}}]});
        assert!(matches!(&classify(&alarm)[0], Trigger::Alarm(a) if a.new_state == "ALARM"));
        let bad = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "not json"}}]});
        assert!(matches!(classify(&bad)[0], Trigger::Malformed { .. }));
        assert_eq!(classify(&json!(42)), vec![Trigger::Unknown]);
    }
}
