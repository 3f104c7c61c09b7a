//! template.yaml as data, for the tests of its invariants: the template with
//! CloudFormation's short tags in their long form, its resources by name and type, the
//! strings of a value, the IAM statements of a function.

use serde_yaml_ng::{Mapping, Value};

use crate::workspace_root;

/// template.yaml's text.
pub fn text() -> String {
    let path = workspace_root().join("template.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The template with CloudFormation's short tags turned into their long form
/// (`!Ref X` -> `{Ref: X}`, `!GetAtt A.B` -> `{Fn::GetAtt: A.B}`, ...).
pub fn template() -> Value {
    parse(&text())
}

/// A template's text (template.yaml or a variant of it) in the long form.
pub fn parse(text: &str) -> Value {
    fn long_form(v: Value) -> Value {
        match v {
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                let name = tag.trim_start_matches('!');
                let key = if name == "Ref" {
                    "Ref".to_owned()
                } else {
                    format!("Fn::{name}")
                };
                let mut m = Mapping::new();
                m.insert(Value::String(key), long_form(t.value));
                Value::Mapping(m)
            }
            Value::Mapping(m) => {
                Value::Mapping(m.into_iter().map(|(k, v)| (k, long_form(v))).collect())
            }
            Value::Sequence(s) => Value::Sequence(s.into_iter().map(long_form).collect()),
            other => other,
        }
    }
    let value = serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("template: {e}"));
    long_form(value)
}

/// Every resource, by logical ID, in the template's order.
pub fn resources(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

/// The resources of one type (`AWS::Serverless::Function`, ...).
pub fn of_type(t: &Value, ty: &str) -> Vec<(String, Value)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

/// One resource by logical ID; panics when there is none.
pub fn resource(t: &Value, name: &str) -> Value {
    resources(t)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no resource {name}"))
        .1
}

/// The strings of a value: itself, or the strings of a sequence (nested ones included).
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// A value as YAML text, to look for the names it mentions.
pub fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

/// The statements of a policy document's `Statement`, each branch of a
/// `!If [cond, statement, statement-or-NoValue]` counted as a statement.
pub fn document_statements(statement: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for st in statement.as_sequence().cloned().unwrap_or_default() {
        if let Some(branches) = st.get("Fn::If").and_then(Value::as_sequence) {
            out.extend(
                branches
                    .iter()
                    .skip(1)
                    .filter(|b| b.get("Effect").is_some())
                    .cloned(),
            );
        } else {
            out.push(st);
        }
    }
    out
}

/// Every IAM statement of a function (inline policies).
pub fn statements(function: &Value) -> Vec<Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|policy| document_statements(&policy["Statement"]))
        .collect()
}
