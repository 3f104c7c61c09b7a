//! Routers built from a table of routes, so the list a Lambda serves is data that the
//! template test can compare with the HTTP API declared in template.yaml.

use std::collections::BTreeMap;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::Method;
use quarry_core::Error;

use crate::context::RequestMeta;
use crate::error::ApiError;

/// One route: its method, its path (axum syntax, `{param}`) and its handler.
pub type Route<S> = (Method, &'static str, MethodRouter<S>);

/// A router serving exactly `routes`. Routes sharing a path are merged into one method
/// router (axum refuses the same path twice).
/// Another method on a known path gets a typed 405 with `Allow`, like every other error.
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
                handler.fallback(move |request: http::Request<Body>| {
                    method_not_allowed(request, allow.clone())
                }),
            )
        })
}

async fn method_not_allowed(request: http::Request<Body>, allow: String) -> Response {
    let (parts, _) = request.into_parts();
    let meta = RequestMeta::from_parts(&parts, Duration::ZERO, Duration::ZERO);
    let error = Error::MethodNotAllowed(format!(
        "{} is not allowed on {}; use {allow}",
        parts.method,
        parts.uri.path()
    ));
    let mut response = ApiError::new(error, &meta.request_id).into_response();
    if let Ok(value) = http::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(http::header::ALLOW, value);
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
