//! The JSON-schema checks Bedrock runs on a model's InvokeModel body, with its messages.
//!
//! Bedrock validates a body against the model's schema and reports every violation at once,
//! one after the other with nothing between them:
//! `Malformed input request: #: required key [texts] not found#: extraneous key [inputText]
//! is not permitted, please reformat your input and try again.` Each check here adds one
//! such violation; [`Violations::finish`] turns them into that one error.

use serde_json::{Map, Value};

use crate::error::BedrockError;

/// The violations found so far in one body.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

/// The schema's name for a JSON value's type, as the messages print it.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

/// A value as an enum violation prints it: strings bare, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Violations {
    pub fn add(&mut self, violation: String) {
        self.0.push(violation);
    }

    /// The body must be an object; any other body has only this one violation.
    pub fn object(body: &Value) -> Result<&Map<String, Value>, BedrockError> {
        body.as_object().ok_or_else(|| {
            let mut v = Self::default();
            v.add(format!(
                "#: expected type: JSONObject, found: {}",
                type_name(body)
            ));
            v.error()
        })
    }

    pub fn required(&mut self, obj: &Map<String, Value>, keys: &[&str]) {
        for key in keys {
            if !obj.contains_key(*key) {
                self.add(format!("#: required key [{key}] not found"));
            }
        }
    }

    pub fn extraneous(&mut self, obj: &Map<String, Value>, allowed: &[&str]) {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.add(format!("#: extraneous key [{key}] is not permitted"));
            }
        }
    }

    /// `value` at `path` is a string, else a type violation.
    pub fn string<'a>(&mut self, path: &str, value: &'a Value) -> Option<&'a str> {
        let s = value.as_str();
        if s.is_none() {
            self.wrong_type(path, "String", value);
        }
        s
    }

    pub fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        let b = value.as_bool();
        if b.is_none() {
            self.wrong_type(path, "Boolean", value);
        }
        b
    }

    pub fn integer(&mut self, path: &str, value: &Value) -> Option<i64> {
        let n = value.as_i64();
        if n.is_none() {
            self.wrong_type(path, "Integer", value);
        }
        n
    }

    pub fn array<'a>(&mut self, path: &str, value: &'a Value) -> Option<&'a Vec<Value>> {
        let a = value.as_array();
        if a.is_none() {
            self.wrong_type(path, "JSONArray", value);
        }
        a
    }

    fn wrong_type(&mut self, path: &str, expected: &str, value: &Value) {
        self.add(format!(
            "{path}: expected type: {expected}, found: {}",
            type_name(value)
        ));
    }

    /// A string out of `allowed`, else an enum violation.
    pub fn one_of<'a>(
        &mut self,
        path: &str,
        value: &'a Value,
        allowed: &[&str],
    ) -> Option<&'a str> {
        let s = self.string(path, value)?;
        if allowed.contains(&s) {
            Some(s)
        } else {
            self.not_in_enum(path, value);
            None
        }
    }

    pub fn not_in_enum(&mut self, path: &str, value: &Value) {
        self.add(format!(
            "{path}: {} is not a valid enum value",
            shown(value)
        ));
    }

    /// At least `min` and at most `max` characters.
    pub fn length(&mut self, path: &str, text: &str, min: usize, max: Option<usize>) {
        let actual = text.chars().count();
        if actual < min {
            self.add(format!(
                "{path}: expected minLength: {min}, actual: {actual}"
            ));
        }
        if let Some(max) = max.filter(|max| actual > *max) {
            self.add(format!(
                "{path}: expected maxLength: {max}, actual: {actual}"
            ));
        }
    }

    /// At least `min` and at most `max` items.
    pub fn items(&mut self, path: &str, items: &[Value], min: usize, max: usize) {
        let found = items.len();
        if found < min {
            self.add(format!(
                "{path}: expected minimum item count: {min}, found: {found}"
            ));
        }
        if found > max {
            self.add(format!(
                "{path}: expected maximum item count: {max}, found: {found}"
            ));
        }
    }

    /// Within `min..=max`.
    pub fn range(&mut self, path: &str, n: i64, min: i64, max: i64) {
        if n < min {
            self.add(format!("{path}: {n} is not greater or equal to {min}"));
        }
        if n > max {
            self.add(format!("{path}: {n} is not less or equal to {max}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn error(&self) -> BedrockError {
        BedrockError::validation(format!(
            "Malformed input request: {}, please reformat your input and try again.",
            self.0.concat()
        ))
    }

    /// Ok when the body broke no rule, else Bedrock's one error listing every violation.
    pub fn finish(self) -> Result<(), BedrockError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_are_listed_together_as_bedrock_does() {
        let body = json!({"inputText": "hi"});
        let obj = Violations::object(&body).unwrap();
        let mut v = Violations::default();
        v.required(obj, &["texts", "input_type"]);
        v.extraneous(obj, &["texts", "input_type"]);
        let e = v.finish().unwrap_err();
        assert_eq!(
            e.message,
            "Malformed input request: #: required key [texts] not found#: required key [input_type] not found#: extraneous key [inputText] is not permitted, please reformat your input and try again."
        );
    }

    #[test]
    fn types_enums_lengths_and_counts() {
        let mut v = Violations::default();
        assert_eq!(v.integer("#/dimensions", &json!("x")), None);
        assert_eq!(v.one_of("#/truncate", &json!("MIDDLE"), &["NONE"]), None);
        v.length("#/inputText", "", 1, None);
        v.items("#/texts", &[json!("a"), json!("b")], 1, 1);
        let e = v.finish().unwrap_err();
        assert!(
            e.message
                .contains("#/dimensions: expected type: Integer, found: String")
        );
        assert!(
            e.message
                .contains("#/truncate: MIDDLE is not a valid enum value")
        );
        assert!(
            e.message
                .contains("#/inputText: expected minLength: 1, actual: 0")
        );
        assert!(
            e.message
                .contains("#/texts: expected maximum item count: 1, found: 2")
        );
        assert!(Violations::object(&json!([1])).is_err());
    }
}
