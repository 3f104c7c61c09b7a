//! The inference profile operations' input constraints, as Bedrock's API model states them,
//! every violation of a request listed in one ValidationException (the batch operations'
//! wording).

use std::collections::HashMap;

use serde_json::Value;

use crate::batch::validate::{Violations, required};
use crate::error::BedrockError;

pub const NAME_PATTERN: &str = r"([0-9a-zA-Z][ _-]?)+";
pub const DESCRIPTION_PATTERN: &str = r"([0-9a-zA-Z:.][ _-]?)+";
pub const COPY_FROM_PATTERN: &str = r"arn:aws(|-us-gov|-cn|-iso|-iso-b):bedrock:(|[0-9a-z-]{0,20}):(|[0-9]{12}):(inference-profile|foundation-model)/[a-zA-Z0-9-:.]+";
pub const IDENTIFIER_PATTERN: &str = r"(arn:aws(|-us-gov|-cn|-iso|-iso-b):bedrock:(|[0-9a-z-]{0,20}):(|[0-9]{12}):(inference-profile|application-inference-profile)/)?[a-zA-Z0-9-:.]+";
pub const TOKEN_PATTERN: &str = r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?";
pub const TAG_PATTERN: &str = r"[a-zA-Z0-9\s._:/=+@-]*";
/// `\S*`, written out because the checker anchors patterns whole.
pub const PAGINATION_PATTERN: &str = r"\S*";

pub const MAX_TAGS: usize = 200;

/// A CreateInferenceProfile request that passed its constraints.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub description: Option<String>,
    pub client_request_token: Option<String>,
    pub copy_from: String,
    pub tags: Vec<(String, String)>,
}

fn optional(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn tags(v: &Value, errors: &mut Violations) -> Vec<(String, String)> {
    let Some(list) = v.get("tags").and_then(Value::as_array) else {
        return Vec::new();
    };
    if list.len() > MAX_TAGS {
        errors.push(format!("Value '[...]' at 'tags' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAGS}"));
    }
    let mut out = Vec::new();
    for (i, tag) in list.iter().enumerate() {
        let at = format!("tags.{}.member", i + 1);
        let key = required(tag, "key", &format!("{at}.key"), errors);
        if let Some(key) = &key {
            errors.string(&format!("{at}.key"), key, 1, 128, Some(TAG_PATTERN));
        }
        let value = required(tag, "value", &format!("{at}.value"), errors);
        if let Some(value) = &value {
            errors.string(&format!("{at}.value"), value, 0, 256, Some(TAG_PATTERN));
        }
        if let (Some(key), Some(value)) = (key, value) {
            out.push((key, value));
        }
    }
    out
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
    let name = required(
        &v,
        "inferenceProfileName",
        "inferenceProfileName",
        &mut errors,
    );
    if let Some(name) = &name {
        errors.string("inferenceProfileName", name, 1, 64, Some(NAME_PATTERN));
    }
    let description = optional(&v, "description");
    if let Some(description) = &description {
        errors.string(
            "description",
            description,
            1,
            200,
            Some(DESCRIPTION_PATTERN),
        );
    }
    let client_request_token = optional(&v, "clientRequestToken");
    if let Some(token) = &client_request_token {
        errors.string("clientRequestToken", token, 1, 256, Some(TOKEN_PATTERN));
    }
    let copy_from = match v.get("modelSource") {
        None | Some(Value::Null) => {
            errors.null("modelSource");
            None
        }
        Some(source) => {
            let copy_from = required(source, "copyFrom", "modelSource.copyFrom", &mut errors);
            if let Some(arn) = &copy_from {
                errors.string(
                    "modelSource.copyFrom",
                    arn,
                    1,
                    2048,
                    Some(COPY_FROM_PATTERN),
                );
            }
            copy_from
        }
    };
    let tags = tags(&v, &mut errors);
    errors.into_result()?;
    match (name, copy_from) {
        (Some(name), Some(copy_from)) => Ok(CreateRequest {
            name,
            description,
            client_request_token,
            copy_from,
            tags,
        }),
        _ => Err(BedrockError::of(
            crate::error::ErrorKind::ValidationException,
        )),
    }
}

/// An `inferenceProfileIdentifier` (profile ARN or ID), checked; returns the profile ID.
pub fn identifier(identifier: &str) -> Result<String, BedrockError> {
    let mut errors = Violations::default();
    errors.string(
        "inferenceProfileIdentifier",
        identifier,
        1,
        2048,
        Some(IDENTIFIER_PATTERN),
    );
    errors.into_result()?;
    Ok(identifier
        .rsplit('/')
        .next()
        .unwrap_or(identifier)
        .to_owned())
}

/// Which profiles ListInferenceProfiles asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileType {
    SystemDefined,
    Application,
}

impl ProfileType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SystemDefined => "SYSTEM_DEFINED",
            Self::Application => "APPLICATION",
        }
    }
}

/// ListInferenceProfiles' query, checked.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub kind: ProfileType,
    pub max_results: usize,
    pub offset: usize,
}

pub fn list_query(query: &HashMap<String, String>) -> Result<ListQuery, BedrockError> {
    let mut errors = Violations::default();
    // The query parameter is `type`; Bedrock lists only system-defined profiles when it is
    // absent.
    let kind = match query.get("type").map(String::as_str) {
        None | Some("SYSTEM_DEFINED") => ProfileType::SystemDefined,
        Some("APPLICATION") => ProfileType::Application,
        Some(other) => {
            errors.one_of("typeEquals", other, &["SYSTEM_DEFINED", "APPLICATION"]);
            ProfileType::SystemDefined
        }
    };
    let max_results = match query.get("maxResults") {
        None => 1000,
        Some(n) => match n.parse::<i64>() {
            Ok(n) => {
                errors.range("maxResults", n, 1, 1000);
                usize::try_from(n).unwrap_or(1000)
            }
            Err(_) => {
                errors.push(format!(
                    "Value '{n}' at 'maxResults' failed to satisfy constraint: Member must be an integer"
                ));
                1000
            }
        },
    };
    if let Some(token) = query.get("nextToken") {
        errors.string("nextToken", token, 1, 2048, Some(PAGINATION_PATTERN));
    }
    errors.into_result()?;
    let offset = match query.get("nextToken") {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| BedrockError::validation("The provided pagination token is invalid."))?,
    };
    Ok(ListQuery {
        kind,
        max_results,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn patterns_compile() {
        for p in [
            NAME_PATTERN,
            DESCRIPTION_PATTERN,
            COPY_FROM_PATTERN,
            IDENTIFIER_PATTERN,
            TAG_PATTERN,
            TOKEN_PATTERN,
            PAGINATION_PATTERN,
        ] {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn a_valid_request_passes() {
        let r = create_request(&body(json!({
            "inferenceProfileName": "team-a chat",
            "description": "Team A",
            "modelSource": {"copyFrom": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0"},
            "tags": [{"key": "team", "value": "a"}],
        })))
        .unwrap();
        assert_eq!(r.name, "team-a chat");
        assert_eq!(r.tags, [("team".to_owned(), "a".to_owned())]);
    }

    #[test]
    fn every_violation_is_listed() {
        let e = create_request(&body(json!({
            "inferenceProfileName": "bad/name",
            "modelSource": {"copyFrom": "amazon.nova-lite-v1:0"},
            "tags": [{"key": "", "value": "x"}],
        })))
        .unwrap_err();
        assert!(
            e.message.starts_with("3 validation errors detected: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("at 'inferenceProfileName'"));
        assert!(e.message.contains("at 'modelSource.copyFrom'"));
        assert!(e.message.contains("at 'tags.1.member.key'"));
        let e = create_request(b"{}").unwrap_err();
        assert!(e.message.contains("Value null at 'inferenceProfileName'"));
        assert!(e.message.contains("Value null at 'modelSource'"));
    }

    #[test]
    fn identifiers_are_ids_or_arns() {
        assert_eq!(identifier("abcdef123456").unwrap(), "abcdef123456");
        assert_eq!(
            identifier(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcdef123456"
            )
            .unwrap(),
            "abcdef123456"
        );
        assert_eq!(
            identifier("us.amazon.nova-lite-v1:0").unwrap(),
            "us.amazon.nova-lite-v1:0"
        );
        assert!(identifier("no/slashes here").is_err());
    }

    #[test]
    fn list_defaults_to_system_defined() {
        let q = list_query(&HashMap::new()).unwrap();
        assert_eq!(q.kind, ProfileType::SystemDefined);
        let q: HashMap<String, String> = [("type".to_owned(), "OTHER".to_owned())].into();
        assert!(list_query(&q).is_err());
    }
}
