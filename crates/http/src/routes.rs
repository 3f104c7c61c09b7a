//! Routers built from a table of routes, so the list a Lambda serves is data that the
//! template test can compare with the HTTP API declared in template.yaml.
//!
//! The router answers some requests itself, before any handler: another method on a known
//! path (405, with `Allow`) and a path no route serves (404). Both get the envelope here, so
//! every Lambda's routing errors look like its handlers' errors. The 404 is a layer rather
//! than a fallback because the API routers are merged under `quarry serve`, and axum allows
//! one custom fallback per merged router.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::{Method, StatusCode};
use quarry_core::Error;

use crate::context::RequestId;
use crate::error::{ApiError, Enveloped};

/// One route: its method, its path (axum syntax, `{param}`) and its handler.
pub type Route<S> = (Method, &'static str, MethodRouter<S>);

/// A router serving exactly `routes`. Routes sharing a path are merged into one method
/// router (axum refuses the same path twice).
pub fn router<S: Clone + Send + Sync + 'static>(routes: Vec<Route<S>>) -> Router<S> {
    let mut by_path: BTreeMap<&'static str, (MethodRouter<S>, Vec<Method>)> = BTreeMap::new();
    for (method, path, handler) in routes {
        let merged = match by_path.remove(path) {
            Some((existing, mut methods)) => {
                methods.push(method);
                (existing.merge(handler), methods)
            }
            None => (handler, vec![method]),
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, (handler, methods))| {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            router.route(
                path,
                handler
                    .fallback(move |request: Request| method_not_allowed(request, allow.clone())),
            )
        })
        .layer(axum::middleware::from_fn(unrouted))
}

async fn method_not_allowed(request: Request, allow: String) -> Response {
    let (mut parts, _) = request.into_parts();
    let error = Error::MethodNotAllowed(format!(
        "{} is not allowed on {}; use {allow}",
        parts.method,
        parts.uri.path()
    ));
    let mut response = ApiError::new(error, &RequestId::of(&mut parts)).into_response();
    if let Ok(value) = http::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(http::header::ALLOW, value);
    }
    response
}

/// The router's own 404 (no route matched) has an empty body: give it the envelope.
async fn unrouted(RequestId(request_id): RequestId, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::NOT_FOUND
        && response.extensions().get::<Enveloped>().is_none()
    {
        return ApiError::new(Error::NotFound("no such route".into()), &request_id).into_response();
    }
    response
}

/// The `(METHOD, path)` pairs of a route table, for comparisons.
pub fn signatures<S>(routes: &[Route<S>]) -> Vec<(String, String)> {
    routes
        .iter()
        .map(|(method, path, _)| (method.as_str().to_owned(), (*path).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        let routes: Vec<Route<()>> = vec![
            (Method::GET, "/a", get(|| async { "a" })),
            (
                Method::POST,
                "/a",
                axum::routing::post(|| async { "posted" }),
            ),
            (
                Method::GET,
                "/missing",
                get(|RequestId(id): RequestId| async move {
                    ApiError::new(Error::NotFound("no such thing".into()), &id)
                }),
            ),
        ];
        router(routes)
    }

    async fn send(method: &str, path: &str) -> (u16, serde_json::Value, http::HeaderMap) {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-request-id", "r-1")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_default(),
            headers,
        )
    }

    #[tokio::test]
    async fn routing_errors_are_envelopes() {
        let (status, body, _) = send("GET", "/nowhere").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["type"], "not_found");
        assert_eq!(body["error"]["message"], "no such route");
        assert_eq!(body["error"]["request_id"], "r-1");
        let (status, body, headers) = send("DELETE", "/a").await;
        assert_eq!(status, 405);
        assert_eq!(body["error"]["type"], "method_not_allowed");
        assert_eq!(headers["allow"], "GET, POST");
    }

    #[tokio::test]
    async fn a_handlers_own_404_is_left_alone() {
        let (status, body, _) = send("GET", "/missing").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["message"], "no such thing");
        assert_eq!(send("GET", "/a").await.0, 200);
    }

    #[tokio::test]
    async fn routers_merge_and_keep_their_envelopes() {
        let other: Router = router(vec![(Method::GET, "/b", get(|| async { "b" }))]);
        let merged = app().merge(other);
        let request = http::Request::get("/c").body(Body::empty()).unwrap();
        let response = merged.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 404);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["type"], "not_found");
    }
}
