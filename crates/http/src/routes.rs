//! Routers built from a table of routes, so the list a Lambda serves is data that the
//! template test can compare with the HTTP API declared in template.yaml.

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::MethodRouter;
use http::Method;

/// One route: its method, its path (axum syntax, `{param}`) and its handler.
pub type Route<S> = (Method, &'static str, MethodRouter<S>);

/// A router serving exactly `routes`. Routes sharing a path are merged into one method
/// router (axum refuses the same path twice).
pub fn router<S: Clone + Send + Sync + 'static>(routes: Vec<Route<S>>) -> Router<S> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<S>> = BTreeMap::new();
    for (_, path, handler) in routes {
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
}

/// The `(METHOD, path)` pairs of a route table, for comparisons.
pub fn signatures<S>(routes: &[Route<S>]) -> Vec<(String, String)> {
    routes
        .iter()
        .map(|(method, path, _)| (method.as_str().to_owned(), (*path).to_owned()))
        .collect()
}
