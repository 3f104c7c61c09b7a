//! Which operation a request's method and path name, as Bedrock's REST bindings place them.

use http::{Method, Uri};
use percent_encoding::percent_decode_str;

use crate::error::{BedrockError, ErrorKind};
use crate::request::ModelOp;

pub enum Route {
    Model { id: String, op: ModelOp },
    Guardrail { id: String, version: String },
    Retrieve { knowledge_base_id: String },
    RetrieveAndGenerate,
    Control(ControlRoute),
}

/// The control plane's operations (the `bedrock` client's), served on the same port.
pub enum ControlRoute {
    CreateJob,
    GetJob { identifier: String },
    ListJobs,
    StopJob { identifier: String },
    CreateProfile,
    GetProfile { identifier: String },
    ListProfiles,
    DeleteProfile { identifier: String },
    ListTags,
}

impl Route {
    /// The HTTP method each operation is bound to.
    pub fn method(&self) -> Method {
        match self {
            Self::Control(
                ControlRoute::GetJob { .. }
                | ControlRoute::ListJobs
                | ControlRoute::GetProfile { .. }
                | ControlRoute::ListProfiles,
            ) => Method::GET,
            Self::Control(ControlRoute::DeleteProfile { .. }) => Method::DELETE,
            _ => Method::POST,
        }
    }
}

fn decode(segment: &str) -> Result<String, BedrockError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| BedrockError::validation("The provided model identifier is invalid."))
}

/// The operation at `uri`; where one path serves two operations, `method` picks it.
pub fn route(method: &Method, uri: &Uri) -> Result<Route, BedrockError> {
    let unknown = || {
        BedrockError::new(
            ErrorKind::UnknownOperationException,
            format!("No Bedrock Runtime operation matches {}", uri.path()),
        )
    };
    let control = |c: ControlRoute| Ok(Route::Control(c));
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["model", id, op] => {
            let op = match *op {
                "converse" => ModelOp::Converse,
                "converse-stream" => ModelOp::ConverseStream,
                "invoke" => ModelOp::InvokeModel,
                "invoke-with-response-stream" => ModelOp::InvokeModelWithResponseStream,
                "count-tokens" => ModelOp::CountTokens,
                _ => return Err(unknown()),
            };
            Ok(Route::Model {
                id: decode(id)?,
                op,
            })
        }
        ["guardrail", id, "version", version, "apply"] => Ok(Route::Guardrail {
            id: decode(id)?,
            version: decode(version)?,
        }),
        ["knowledgebases", id, "retrieve"] => Ok(Route::Retrieve {
            knowledge_base_id: decode(id)?,
        }),
        ["retrieveAndGenerate"] => Ok(Route::RetrieveAndGenerate),
        ["model-invocation-job"] => control(ControlRoute::CreateJob),
        ["model-invocation-jobs"] => control(ControlRoute::ListJobs),
        ["model-invocation-job", id] => control(ControlRoute::GetJob {
            identifier: decode(id)?,
        }),
        ["model-invocation-job", id, "stop"] => control(ControlRoute::StopJob {
            identifier: decode(id)?,
        }),
        ["inference-profiles"] if method == Method::GET => control(ControlRoute::ListProfiles),
        ["inference-profiles"] => control(ControlRoute::CreateProfile),
        ["inference-profiles", id] => {
            let identifier = decode(id)?;
            control(if method == Method::DELETE {
                ControlRoute::DeleteProfile { identifier }
            } else {
                ControlRoute::GetProfile { identifier }
            })
        }
        ["listTagsForResource"] => control(ControlRoute::ListTags),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(method: Method, path: &str) -> Route {
        route(&method, &path.parse().unwrap()).unwrap()
    }

    #[test]
    fn one_path_serves_two_operations_by_method() {
        assert!(matches!(
            at(Method::GET, "/inference-profiles"),
            Route::Control(ControlRoute::ListProfiles)
        ));
        assert!(matches!(
            at(Method::POST, "/inference-profiles"),
            Route::Control(ControlRoute::CreateProfile)
        ));
        let arn =
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc";
        match at(Method::DELETE, &format!("/inference-profiles/{arn}")) {
            Route::Control(ControlRoute::DeleteProfile { identifier }) => assert_eq!(
                identifier,
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
            ),
            _ => panic!("not DeleteInferenceProfile"),
        }
        let r = at(Method::PUT, "/inference-profiles/abc");
        assert_eq!(r.method(), Method::GET);
    }
}
