//! The batch operations' input constraints, as Bedrock's API model states them, with its
//! wording: every violation of a request is listed in one `N validation errors detected`
//! ValidationException, so callers see the same failures they would on AWS.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use regex::Regex;
use serde_json::Value;

use super::store::Status;
use crate::error::BedrockError;

pub const JOB_NAME_PATTERN: &str = r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}";
pub const ROLE_ARN_PATTERN: &str = r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+";
pub const TOKEN_PATTERN: &str = r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}";
pub const S3_URI_PATTERN: &str =
    r"s3://[a-z0-9][-.a-z0-9]{1,61}(?:/[-!_*'().a-z0-9A-Z]+(?:/[-!_*'().a-z0-9A-Z]+)*)?/?";
pub const MODEL_ID_PATTERN: &str = r"(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:(([0-9]{12}:custom-model/[a-z0-9-]{1,63}[.]{1}[a-z0-9-:]{1,63}/[a-z0-9]{12}$)|(:foundation-model/[a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}$)))|([a-z0-9-]{1,63}[.]{1}[a-z0-9-]{1,63}([.]?[a-z0-9-]{1,63})([:][a-z0-9-]{1,63}){0,2})|(([0-9a-zA-Z][_-]?)+)";
pub const ACCOUNT_PATTERN: &str = r"[0-9]{12}";
pub const JOB_IDENTIFIER_PATTERN: &str =
    r"((arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-invocation-job/)?[a-z0-9]{12})";

pub const MIN_TIMEOUT_HOURS: i64 = 24;
pub const MAX_TIMEOUT_HOURS: i64 = 168;

/// Whether `value` matches `pattern` whole, as Smithy patterns are applied.
fn matches(pattern: &'static str, value: &str) -> bool {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<&'static str, Option<Regex>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let re = cache
        .entry(pattern)
        .or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).ok());
    // The patterns are constants tested below; one that did not compile checks nothing.
    re.as_ref().is_none_or(|re| re.is_match(value))
}

/// Violations of one request, reported together.
#[derive(Default)]
pub struct Violations(Vec<String>);

impl Violations {
    pub fn null(&mut self, at: &str) {
        self.0.push(format!(
            "Value null at '{at}' failed to satisfy constraint: Member must not be null"
        ));
    }

    /// Length then pattern, as Bedrock checks a string member.
    pub fn string(
        &mut self,
        at: &str,
        value: &str,
        min: usize,
        max: usize,
        pattern: Option<&'static str>,
    ) {
        let len = value.chars().count();
        if len < min {
            self.0.push(format!("Value '{value}' at '{at}' failed to satisfy constraint: Member must have length greater than or equal to {min}"));
        } else if len > max {
            self.0.push(format!("Value '{value}' at '{at}' failed to satisfy constraint: Member must have length less than or equal to {max}"));
        } else if let Some(p) = pattern
            && !matches(p, value)
        {
            self.0.push(format!("Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy regular expression pattern: {p}"));
        }
    }

    pub fn range(&mut self, at: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.0.push(format!("Value '{value}' at '{at}' failed to satisfy constraint: Member must have value greater than or equal to {min}"));
        } else if value > max {
            self.0.push(format!("Value '{value}' at '{at}' failed to satisfy constraint: Member must have value less than or equal to {max}"));
        }
    }

    pub fn one_of(&mut self, at: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.0.push(format!("Value '{value}' at '{at}' failed to satisfy constraint: Member must satisfy enum value set: [{}]", allowed.join(", ")));
        }
    }

    /// A violation worded by the caller.
    pub fn push(&mut self, message: String) {
        self.0.push(message);
    }

    pub fn into_result(self) -> Result<(), BedrockError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(BedrockError::validation(format!(
                "1 validation error detected: {}",
                self.0.join("; ")
            ))),
            n => Err(BedrockError::validation(format!(
                "{n} validation errors detected: {}",
                self.0.join("; ")
            ))),
        }
    }
}

/// A CreateModelInvocationJob request that passed its constraints.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub job_name: String,
    pub role_arn: String,
    pub client_request_token: Option<String>,
    pub model_id: String,
    pub input_data_config: Value,
    pub output_data_config: Value,
    pub vpc_config: Option<Value>,
    pub timeout_hours: u32,
    pub input_uri: String,
    pub output_uri: String,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A string member: `None` when absent; a wrong type is reported like an absent one would
/// not be, since the SDKs never send one.
/// The bucket owner and URI an input or output S3 config shares; the URI when present.
fn s3_location(s3: &Value, at: &str, errors: &mut Violations) -> Option<String> {
    if let Some(owner) = str_at(s3, "s3BucketOwner") {
        errors.string(
            &format!("{at}.s3BucketOwner"),
            owner,
            0,
            12,
            Some(ACCOUNT_PATTERN),
        );
    }
    let uri = required(s3, "s3Uri", &format!("{at}.s3Uri"), errors);
    if let Some(uri) = &uri {
        errors.string(&format!("{at}.s3Uri"), uri, 1, 1024, Some(S3_URI_PATTERN));
    }
    uri
}

/// A required string member; `None` (and a violation) when it is absent or not a string.
pub fn required(v: &Value, key: &str, at: &str, errors: &mut Violations) -> Option<String> {
    match v.get(key) {
        None | Some(Value::Null) => {
            errors.null(at);
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.0.push(format!(
                "Value '{other}' at '{at}' failed to satisfy constraint: Member must be a string"
            ));
            None
        }
    }
}

pub fn create_request(body: &[u8]) -> Result<CreateRequest, BedrockError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| BedrockError::validation("The request body is not valid JSON."))?;
    if !v.is_object() {
        return Err(BedrockError::validation(
            "The request body is not a JSON object.",
        ));
    }
    let mut errors = Violations::default();
    let job_name = required(&v, "jobName", "jobName", &mut errors);
    if let Some(name) = &job_name {
        errors.string("jobName", name, 1, 63, Some(JOB_NAME_PATTERN));
    }
    let role_arn = required(&v, "roleArn", "roleArn", &mut errors);
    if let Some(role) = &role_arn {
        errors.string("roleArn", role, 0, 2048, Some(ROLE_ARN_PATTERN));
    }
    let client_request_token = str_at(&v, "clientRequestToken").map(str::to_owned);
    if let Some(token) = &client_request_token {
        errors.string("clientRequestToken", token, 1, 256, Some(TOKEN_PATTERN));
    }
    let model_id = required(&v, "modelId", "modelId", &mut errors);
    if let Some(model) = &model_id {
        errors.string("modelId", model, 1, 2048, Some(MODEL_ID_PATTERN));
    }

    let input_data_config = v.get("inputDataConfig").cloned().unwrap_or(Value::Null);
    let input_uri = match input_data_config.get("s3InputDataConfig") {
        _ if input_data_config.is_null() => {
            errors.null("inputDataConfig");
            None
        }
        None | Some(Value::Null) => {
            errors.null("inputDataConfig.s3InputDataConfig");
            None
        }
        Some(s3) => {
            let at = "inputDataConfig.s3InputDataConfig";
            if let Some(format) = str_at(s3, "s3InputFormat") {
                errors.one_of(&format!("{at}.s3InputFormat"), format, &["JSONL"]);
            }
            s3_location(s3, at, &mut errors)
        }
    };

    let output_data_config = v.get("outputDataConfig").cloned().unwrap_or(Value::Null);
    let output_uri = match output_data_config.get("s3OutputDataConfig") {
        _ if output_data_config.is_null() => {
            errors.null("outputDataConfig");
            None
        }
        None | Some(Value::Null) => {
            errors.null("outputDataConfig.s3OutputDataConfig");
            None
        }
        Some(s3) => {
            let at = "outputDataConfig.s3OutputDataConfig";
            if let Some(key) = str_at(s3, "s3EncryptionKeyId") {
                errors.string(&format!("{at}.s3EncryptionKeyId"), key, 1, 2048, None);
            }
            s3_location(s3, at, &mut errors)
        }
    };

    let timeout = v.get("timeoutDurationInHours").and_then(Value::as_i64);
    if let Some(hours) = timeout {
        errors.range(
            "timeoutDurationInHours",
            hours,
            MIN_TIMEOUT_HOURS,
            MAX_TIMEOUT_HOURS,
        );
    }
    if let Some(kind) = str_at(&v, "modelInvocationType") {
        errors.one_of("modelInvocationType", kind, &["InvokeModel", "Converse"]);
    }
    if let Some(tags) = v.get("tags").and_then(Value::as_array) {
        if tags.len() > 200 {
            errors.0.push(format!("Value '[...]' at 'tags' failed to satisfy constraint: Member must have length less than or equal to 200 (found {})", tags.len()));
        }
        for (i, tag) in tags.iter().enumerate() {
            let at = format!("tags.{}", i + 1);
            if let Some(key) = required(tag, "key", &format!("{at}.member.key"), &mut errors) {
                errors.string(&format!("{at}.member.key"), &key, 1, 128, None);
            }
            if let Some(value) = required(tag, "value", &format!("{at}.member.value"), &mut errors)
            {
                errors.string(&format!("{at}.member.value"), &value, 0, 256, None);
            }
        }
    }
    errors.into_result()?;
    if str_at(&v, "modelInvocationType") == Some("Converse") {
        return Err(BedrockError::validation(
            "The emulator runs InvokeModel batch jobs only; modelInvocationType Converse is not supported.",
        ));
    }
    match (job_name, role_arn, model_id, input_uri, output_uri) {
        (Some(job_name), Some(role_arn), Some(model_id), Some(input_uri), Some(output_uri)) => {
            Ok(CreateRequest {
                job_name,
                role_arn,
                client_request_token,
                model_id,
                input_data_config,
                output_data_config,
                vpc_config: v.get("vpcConfig").cloned(),
                // Bedrock's default: a week.
                timeout_hours: timeout
                    .and_then(|h| u32::try_from(h).ok())
                    .unwrap_or(MAX_TIMEOUT_HOURS as u32),
                input_uri,
                output_uri,
            })
        }
        _ => Err(BedrockError::validation(
            "Malformed input request, please reformat your input and try again.",
        )),
    }
}

/// The job ID a `jobIdentifier` (job ARN or ID) names.
pub fn job_id(identifier: &str) -> Result<String, BedrockError> {
    let mut errors = Violations::default();
    errors.string(
        "jobIdentifier",
        identifier,
        0,
        1011,
        Some(JOB_IDENTIFIER_PATTERN),
    );
    errors.into_result()?;
    Ok(identifier
        .rsplit('/')
        .next()
        .unwrap_or(identifier)
        .to_owned())
}

/// ListModelInvocationJobs' query, checked.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub status: Option<Status>,
    pub name_contains: Option<String>,
    pub submitted_after: Option<SystemTime>,
    pub submitted_before: Option<SystemTime>,
    pub max_results: usize,
    pub offset: usize,
    pub descending: bool,
}

fn time(at: &str, value: &str, errors: &mut Violations) -> Option<SystemTime> {
    let parsed = DateTime::from_str(value, Format::DateTime)
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok());
    if parsed.is_none() {
        errors.0.push(format!(
            "Value '{value}' at '{at}' failed to satisfy constraint: Member must be a timestamp in ISO 8601 date-time format"
        ));
    }
    parsed
}

pub fn list_query(query: &HashMap<String, String>) -> Result<ListQuery, BedrockError> {
    let mut errors = Violations::default();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let status = query.get("statusEquals").and_then(|s| {
        errors.one_of("statusEquals", s, &statuses);
        Status::parse(s)
    });
    if let Some(name) = query.get("nameContains") {
        errors.string("nameContains", name, 1, 63, Some(JOB_NAME_PATTERN));
    }
    let submitted_after = query
        .get("submitTimeAfter")
        .and_then(|t| time("submitTimeAfter", t, &mut errors));
    let submitted_before = query
        .get("submitTimeBefore")
        .and_then(|t| time("submitTimeBefore", t, &mut errors));
    let max_results = match query.get("maxResults") {
        None => 1000,
        Some(n) => match n.parse::<i64>() {
            Ok(n) => {
                errors.range("maxResults", n, 1, 1000);
                usize::try_from(n).unwrap_or(1000)
            }
            Err(_) => {
                errors.0.push(format!(
                    "Value '{n}' at 'maxResults' failed to satisfy constraint: Member must be an integer"
                ));
                1000
            }
        },
    };
    if let Some(by) = query.get("sortBy") {
        errors.one_of("sortBy", by, &["CreationTime"]);
    }
    let descending = match query.get("sortOrder") {
        None => true,
        Some(order) => {
            errors.one_of("sortOrder", order, &["Ascending", "Descending"]);
            order != "Ascending"
        }
    };
    errors.into_result()?;
    let offset = match query.get("nextToken") {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| BedrockError::validation("The provided pagination token is invalid."))?,
    };
    Ok(ListQuery {
        status,
        name_contains: query.get("nameContains").cloned(),
        submitted_after,
        submitted_before,
        max_results,
        offset,
        descending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn valid() -> Value {
        json!({
            "jobName": "nightly-run.1",
            "roleArn": "arn:aws:iam::123456789012:role/batch",
            "modelId": "amazon.nova-lite-v1:0",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://in-bucket/records/a.jsonl"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://out-bucket/results/"}},
        })
    }

    #[test]
    fn patterns_compile() {
        for p in [
            JOB_NAME_PATTERN,
            ROLE_ARN_PATTERN,
            TOKEN_PATTERN,
            S3_URI_PATTERN,
            MODEL_ID_PATTERN,
            ACCOUNT_PATTERN,
            JOB_IDENTIFIER_PATTERN,
        ] {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn a_valid_request_passes_with_the_default_timeout() {
        let r = create_request(&body(valid())).unwrap();
        assert_eq!(r.timeout_hours, 168);
        assert_eq!(r.input_uri, "s3://in-bucket/records/a.jsonl");
    }

    #[test]
    fn every_violation_is_listed() {
        let mut v = valid();
        v["jobName"] = json!("bad name!");
        v["timeoutDurationInHours"] = json!(12);
        v["roleArn"] = json!("role");
        let e = create_request(&body(v)).unwrap_err();
        assert!(
            e.message.starts_with("3 validation errors detected: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("Value 'bad name!' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{}", e.message);
        assert!(
            e.message
                .contains("Member must have value greater than or equal to 24")
        );
    }

    #[test]
    fn missing_members_are_null() {
        let e = create_request(b"{}").unwrap_err();
        assert!(
            e.message.contains("Value null at 'jobName'"),
            "{}",
            e.message
        );
        assert!(e.message.contains("Value null at 'inputDataConfig'"));
    }

    #[test]
    fn model_ids_follow_the_api_model() {
        for ok in [
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1",
        ] {
            let mut v = valid();
            v["modelId"] = json!(ok);
            assert!(create_request(&body(v)).is_ok(), "{ok}");
        }
        let mut v = valid();
        v["modelId"] = json!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x");
        let e = create_request(&body(v)).unwrap_err();
        assert!(e.message.contains("at 'modelId'"), "{}", e.message);
    }

    #[test]
    fn identifiers_are_ids_or_arns() {
        assert_eq!(job_id("abcdef123456").unwrap(), "abcdef123456");
        assert_eq!(
            job_id("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456")
                .unwrap(),
            "abcdef123456"
        );
        assert!(job_id("nope").is_err());
    }
}
