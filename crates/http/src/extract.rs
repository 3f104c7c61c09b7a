//! Extractors whose rejection is the error envelope: a handler that takes them sees only a
//! known caller, a bounded JSON body, a well-formed path or query.
//!
//! Order matters and follows the arguments: the request's facts ([`RequestMeta`], which
//! cannot fail), then the [`Caller`], then the body ([`JsonBody`]), so an unauthenticated
//! request is refused before its body is read.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::IntoResponse;
use bytes::Bytes;
use http::request::Parts;
use lambda_http::request::RequestContext;
use quarry_core::Error;
use quarry_core::config::Configs;
use quarry_core::tenancy;

use crate::auth::AuthMode;
use crate::body::json_content_type;
use crate::context::{RequestId, Timing};
use crate::error::{ApiError, Rejection};

/// How an API accepts requests.
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    pub max_body_bytes: usize,
    /// Budget of a request when there is no Lambda deadline (local runs).
    pub request_timeout: std::time::Duration,
    /// Kept back from the Lambda deadline for the answer to leave.
    pub deadline_margin: std::time::Duration,
    pub auth: AuthMode,
}

impl AcceptOptions {
    pub fn timing(&self) -> Timing {
        Timing {
            timeout: self.request_timeout,
            margin: self.deadline_margin,
        }
    }
}

/// What the extractors need from an API's state.
pub trait ApiState: Send + Sync {
    fn auth(&self) -> &AuthMode;
    fn timing(&self) -> Timing;
    fn max_body_bytes(&self) -> usize;
    /// Where the tenant directory is read.
    fn configs(&self) -> &Configs;
}

impl<T: ApiState + ?Sized> ApiState for std::sync::Arc<T> {
    fn auth(&self) -> &AuthMode {
        (**self).auth()
    }
    fn timing(&self) -> Timing {
        (**self).timing()
    }
    fn max_body_bytes(&self) -> usize {
        (**self).max_body_bytes()
    }
    fn configs(&self) -> &Configs {
        (**self).configs()
    }
}

fn refuse(parts: &mut Parts, error: impl Into<Error>) -> Rejection {
    Rejection(ApiError::new(error, &RequestId::of(parts)))
}

/// The authenticated caller: its tenant, policy and whether it is an admin (401 otherwise).
/// A request presenting no credentials is refused from its headers alone; only a presented
/// credential costs a (cached) read of the tenant directory.
#[derive(Debug, Clone)]
pub struct Caller(pub tenancy::Caller);

impl<S: ApiState> FromRequestParts<S> for Caller {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let context = parts.extensions.get::<RequestContext>();
        let credential = match state.auth().credential(&parts.headers, context) {
            Ok(c) => c,
            Err(e) => return Err(refuse(parts, e)),
        };
        let directory = match state.configs().tenants().await {
            Ok(d) => d,
            Err(e) => return Err(refuse(parts, e)),
        };
        credential
            .resolve(&directory)
            .map(Caller)
            .map_err(|e| refuse(parts, e))
    }
}

/// A JSON request body, read whole up to the API's limit: a `Content-Type` that is not JSON
/// is a 415, a longer body a 413. Parsing is the handler's: its errors name the field at
/// fault, and the raw bytes are what an idempotency record compares.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Bytes);

impl<S: ApiState> FromRequest<S> for JsonBody {
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Rejection> {
        let (mut parts, body) = request.into_parts();
        if let Err(e) = json_content_type(&parts.headers) {
            return Err(refuse(&mut parts, e));
        }
        let limit = state.max_body_bytes();
        match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(_) => Err(refuse(
                &mut parts,
                Error::PayloadTooLarge(format!(
                    "the request body exceeds the limit of {limit} bytes"
                )),
            )),
        }
    }
}

/// Any of axum's own extractors (`Path`, `Query`, ...) with its rejection turned into the
/// envelope: a 4xx is an `invalid_request` carrying axum's explanation, a 5xx (a route
/// declared wrong) an internal error.
#[derive(Debug, Clone)]
pub struct WithEnvelope<E>(pub E);

impl<S, E> FromRequestParts<S> for WithEnvelope<E>
where
    S: Send + Sync,
    E: FromRequestParts<S>,
    E::Rejection: IntoResponse,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let response = match E::from_request_parts(parts, state).await {
            Ok(e) => return Ok(Self(e)),
            Err(rejection) => rejection.into_response(),
        };
        let status = response.status();
        let text = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let error = if status.is_server_error() {
            Error::Internal(text)
        } else {
            Error::BadRequest {
                field: None,
                message: text,
            }
        };
        Err(refuse(parts, error))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use axum::Router;
    use axum::routing::{get, post};
    use quarry_core::params::{MemoryParams, ParamError, Parameter};
    use quarry_core::ports::ParameterStore;
    use quarry_core::tenancy::{KeyEntry, TenantDirectory, TenantPolicy, hash_key};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    #[derive(Default)]
    struct Counting {
        inner: MemoryParams,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl ParameterStore for Counting {
        async fn get(&self, name: &str, decrypt: bool) -> Result<Parameter, ParamError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.get(name, decrypt).await
        }
    }

    struct State {
        options: AcceptOptions,
        configs: Configs,
    }

    impl ApiState for State {
        fn auth(&self) -> &AuthMode {
            &self.options.auth
        }
        fn timing(&self) -> Timing {
            self.options.timing()
        }
        fn max_body_bytes(&self) -> usize {
            self.options.max_body_bytes
        }
        fn configs(&self) -> &Configs {
            &self.configs
        }
    }

    fn app() -> (Router, Arc<Counting>) {
        let params = Arc::new(Counting::default());
        let mut directory = TenantDirectory::default();
        directory
            .tenants
            .insert("acme".into(), TenantPolicy::default());
        directory.keys.insert(
            hash_key("secret"),
            KeyEntry {
                tenant: "acme".into(),
                admin: false,
                operator: false,
                label: None,
            },
        );
        params.inner.put(
            "/quarry/t/tenants",
            &serde_json::to_string(&directory).unwrap(),
        );
        let state = Arc::new(State {
            options: AcceptOptions {
                max_body_bytes: 16,
                request_timeout: Duration::from_secs(1),
                deadline_margin: Duration::ZERO,
                auth: AuthMode::ApiKey,
            },
            configs: Configs::new(params.clone(), "/quarry/t", Duration::from_secs(60)),
        });
        let router = Router::new()
            .route("/who", get(|Caller(c): Caller| async move { c.tenant }))
            .route(
                "/echo",
                post(|Caller(_): Caller, JsonBody(b): JsonBody| async move { b }),
            )
            .route(
                "/n/{n}",
                get(
                    |WithEnvelope(axum::extract::Path(n)): WithEnvelope<
                        axum::extract::Path<u32>,
                    >| async move { n.to_string() },
                ),
            )
            .with_state(state);
        (router, params)
    }

    async fn send(request: http::Request<axum::body::Body>) -> (u16, String) {
        let (router, _) = app();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn error_type(body: &str) -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        v["error"]["type"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn no_credentials_are_refused_without_a_directory_read() {
        let (router, params) = app();
        let request = http::Request::get("/who")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(params.reads.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_known_key_is_the_caller() {
        let (router, params) = app();
        let request = http::Request::get("/who")
            .header("authorization", "Bearer secret")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(params.reads.load(Ordering::SeqCst), 1);
        let (status, body) = send(
            http::Request::get("/who")
                .header("authorization", "Bearer wrong")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!((status, error_type(&body).as_str()), (401, "unauthorized"));
    }

    #[tokio::test]
    async fn bodies_are_json_and_bounded() {
        let post = |ct: Option<&str>, body: &'static str| {
            let mut r = http::Request::post("/echo").header("authorization", "Bearer secret");
            if let Some(ct) = ct {
                r = r.header("content-type", ct);
            }
            r.body(axum::body::Body::from(body)).unwrap()
        };
        assert_eq!(send(post(None, "{}")).await, (200, "{}".to_owned()));
        assert_eq!(
            send(post(Some("application/json"), "{}")).await,
            (200, "{}".to_owned())
        );
        let (status, body) = send(post(Some("text/plain"), "{}")).await;
        assert_eq!(
            (status, error_type(&body).as_str()),
            (415, "unsupported_media_type")
        );
        let (status, body) = send(post(None, "[1, 2, 3, 4, 5, 6, 7, 8, 9]")).await;
        assert_eq!(
            (status, error_type(&body).as_str()),
            (413, "payload_too_large")
        );
    }

    #[tokio::test]
    async fn a_malformed_path_is_an_invalid_request_envelope() {
        let (status, body) = send(
            http::Request::get("/n/seven")
                .header("x-request-id", "r-9")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request");
        assert_eq!(v["error"]["request_id"], "r-9");
        assert_eq!(
            send(
                http::Request::get("/n/7")
                    .body(axum::body::Body::empty())
                    .unwrap()
            )
            .await,
            (200, "7".to_owned())
        );
    }
}
