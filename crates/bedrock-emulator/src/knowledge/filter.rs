//! Bedrock's RetrievalFilter over chunk metadata: `equals`, `notEquals`, `greaterThan`,
//! `greaterThanOrEquals`, `lessThan`, `lessThanOrEquals`, `in`, `notIn`, `startsWith`,
//! `stringContains`, `listContains`, `andAll` and `orAll`.

use serde_json::{Map, Value};

use crate::error::BedrockError;

const PATH: &str = "retrievalConfiguration.vectorSearchConfiguration.filter";

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare { op: Op, key: String, value: Value },
    All(Vec<Filter>),
    Any(Vec<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanOrEquals,
    LessThan,
    LessThanOrEquals,
    In,
    NotIn,
    StartsWith,
    StringContains,
    ListContains,
}

fn invalid(at: &str, constraint: &str) -> BedrockError {
    BedrockError::validation(format!(
        "1 validation error detected: Value at '{at}' failed to satisfy constraint: {constraint}"
    ))
}

/// Parses a filter; a filter object must set exactly one operator, as the union it is.
pub fn parse(value: &Value) -> Result<Filter, BedrockError> {
    parse_at(value, PATH)
}

fn parse_at(value: &Value, at: &str) -> Result<Filter, BedrockError> {
    let Some(object) = value.as_object() else {
        return Err(invalid(at, "Member must be a structure"));
    };
    let mut entries = object.iter();
    let (Some((name, operand)), None) = (entries.next(), entries.next()) else {
        return Err(invalid(at, "Member must have exactly one member set"));
    };
    let here = format!("{at}.{name}");
    match name.as_str() {
        "andAll" | "orAll" => {
            let items = operand
                .as_array()
                .ok_or_else(|| invalid(&here, "Member must be a list"))?;
            if items.len() < 2 {
                return Err(invalid(
                    &here,
                    "Member must have length greater than or equal to 2",
                ));
            }
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, f)| parse_at(f, &format!("{here}.{}", i + 1)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if name == "andAll" {
                Filter::All(parsed)
            } else {
                Filter::Any(parsed)
            })
        }
        _ => {
            let op = op_named(name)
                .ok_or_else(|| invalid(at, &format!("Unknown filter operator {name}")))?;
            let key = operand
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty() && k.len() <= 100)
                .ok_or_else(|| {
                    invalid(
                        &format!("{here}.key"),
                        "Member must have length between 1 and 100",
                    )
                })?;
            let value = operand
                .get("value")
                .cloned()
                .ok_or_else(|| invalid(&format!("{here}.value"), "Member must not be null"))?;
            check_operand(op, &value, &format!("{here}.value"))?;
            Ok(Filter::Compare {
                op,
                key: key.to_owned(),
                value,
            })
        }
    }
}

fn op_named(name: &str) -> Option<Op> {
    Some(match name {
        "equals" => Op::Equals,
        "notEquals" => Op::NotEquals,
        "greaterThan" => Op::GreaterThan,
        "greaterThanOrEquals" => Op::GreaterThanOrEquals,
        "lessThan" => Op::LessThan,
        "lessThanOrEquals" => Op::LessThanOrEquals,
        "in" => Op::In,
        "notIn" => Op::NotIn,
        "startsWith" => Op::StartsWith,
        "stringContains" => Op::StringContains,
        "listContains" => Op::ListContains,
        _ => return None,
    })
}

fn check_operand(op: Op, value: &Value, at: &str) -> Result<(), BedrockError> {
    let ok = match op {
        Op::GreaterThan | Op::GreaterThanOrEquals | Op::LessThan | Op::LessThanOrEquals => {
            value.is_number()
        }
        Op::In | Op::NotIn => value.is_array(),
        Op::StartsWith | Op::StringContains => value.is_string(),
        Op::Equals | Op::NotEquals | Op::ListContains => true,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(at, "Member has the wrong type for its operator"))
    }
}

/// Whether metadata passes the filter. A missing key matches only `notEquals` and
/// `notIn`.
pub fn matches(filter: &Filter, metadata: &Map<String, Value>) -> bool {
    match filter {
        Filter::All(items) => items.iter().all(|f| matches(f, metadata)),
        Filter::Any(items) => items.iter().any(|f| matches(f, metadata)),
        Filter::Compare { op, key, value } => {
            let Some(actual) = metadata.get(key) else {
                return matches!(op, Op::NotEquals | Op::NotIn);
            };
            compare(*op, actual, value)
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(op: Op, actual: &Value, value: &Value) -> bool {
    let numbers = || Some((actual.as_f64()?, value.as_f64()?));
    let list = || value.as_array().map(Vec::as_slice).unwrap_or_default();
    match op {
        Op::Equals => same(actual, value),
        Op::NotEquals => !same(actual, value),
        Op::GreaterThan => numbers().is_some_and(|(a, v)| a > v),
        Op::GreaterThanOrEquals => numbers().is_some_and(|(a, v)| a >= v),
        Op::LessThan => numbers().is_some_and(|(a, v)| a < v),
        Op::LessThanOrEquals => numbers().is_some_and(|(a, v)| a <= v),
        Op::In => list().iter().any(|v| same(actual, v)),
        Op::NotIn => !list().iter().any(|v| same(actual, v)),
        Op::StartsWith => match (actual.as_str(), value.as_str()) {
            (Some(a), Some(v)) => a.starts_with(v),
            _ => false,
        },
        // On a list attribute, true when any member contains the value.
        Op::StringContains => {
            let Some(v) = value.as_str() else {
                return false;
            };
            match actual {
                Value::String(a) => a.contains(v),
                Value::Array(items) => items
                    .iter()
                    .any(|i| i.as_str().is_some_and(|s| s.contains(v))),
                _ => false,
            }
        }
        Op::ListContains => actual
            .as_array()
            .is_some_and(|items| items.iter().any(|i| same(i, value))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta() -> Map<String, Value> {
        json!({"tenant": "acme", "year": 2024, "tags": ["a", "beta"]})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn check(filter: Value) -> bool {
        matches(&parse(&filter).unwrap_or(Filter::Any(vec![])), &meta())
    }

    #[test]
    fn operators() {
        assert!(check(json!({"equals": {"key": "tenant", "value": "acme"}})));
        assert!(!check(
            json!({"notEquals": {"key": "tenant", "value": "acme"}})
        ));
        assert!(check(json!({"notEquals": {"key": "missing", "value": 1}})));
        assert!(check(
            json!({"greaterThan": {"key": "year", "value": 2023}})
        ));
        assert!(check(
            json!({"greaterThanOrEquals": {"key": "year", "value": 2024}})
        ));
        assert!(!check(json!({"lessThan": {"key": "year", "value": 2024}})));
        assert!(check(
            json!({"lessThanOrEquals": {"key": "year", "value": 2024.0}})
        ));
        assert!(check(
            json!({"in": {"key": "tenant", "value": ["x", "acme"]}})
        ));
        assert!(!check(
            json!({"notIn": {"key": "tenant", "value": ["acme"]}})
        ));
        assert!(check(
            json!({"startsWith": {"key": "tenant", "value": "ac"}})
        ));
        assert!(check(
            json!({"stringContains": {"key": "tenant", "value": "cm"}})
        ));
        assert!(check(
            json!({"stringContains": {"key": "tags", "value": "et"}})
        ));
        assert!(check(
            json!({"listContains": {"key": "tags", "value": "a"}})
        ));
        assert!(check(json!({"andAll": [
            {"equals": {"key": "tenant", "value": "acme"}},
            {"equals": {"key": "year", "value": 2024}}]})));
        assert!(check(json!({"orAll": [
            {"equals": {"key": "tenant", "value": "globex"}},
            {"equals": {"key": "year", "value": 2024}}]})));
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert!(parse(&json!({"andAll": [{"equals": {"key": "a", "value": 1}}]})).is_err());
        assert!(parse(&json!({"equals": {"key": "a", "value": 1}, "in": {}})).is_err());
        assert!(parse(&json!({"greaterThan": {"key": "a", "value": "x"}})).is_err());
        assert!(parse(&json!({"near": {"key": "a", "value": 1}})).is_err());
    }
}
