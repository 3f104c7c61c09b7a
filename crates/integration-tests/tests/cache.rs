//! The response cache end to end: when it is used, tenant scoping, modes, expiry, streams
//! replayed from it, failing open, and the cache-lookup API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{call, chat, options, serve, sse_events, state};
use quarry_testkit::{Stack, json_reply};
use serde_json::{Value, json};
use tower::ServiceExt;

fn ask(text: &str, extra: Value) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": text}], "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn temperature_zero_answers_come_from_the_cache_without_a_model_call() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let first = chat(&s, stack.key("acme"), ask("What is a queue?", json!({}))).await;
    assert_eq!(
        (first.status, first.body["cached"].clone()),
        (200, json!(false)),
        "{}",
        first.body
    );
    let second = chat(&s, stack.key("acme"), ask("What is a queue?", json!({}))).await;
    assert_eq!(second.body["cached"], true, "{}", second.body);
    assert_eq!(second.body["output"], first.body["output"]);
    assert_eq!(second.body["cost_usd"], "0.000000");
    assert_eq!(second.body["usage"]["total_tokens"], 0);
    assert_eq!(stack.model_calls(), 1, "a cache hit makes no Bedrock call");

    // A non-zero temperature is not cached (the answer may legitimately vary).
    chat(
        &s,
        stack.key("acme"),
        ask("What is a queue?", json!({"temperature": 0.7})),
    )
    .await;
    chat(
        &s,
        stack.key("acme"),
        ask("What is a queue?", json!({"temperature": 0.7})),
    )
    .await;
    assert_eq!(stack.model_calls(), 3);
}

#[tokio::test]
async fn tenant_b_never_receives_tenant_as_cached_answer() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let a = chat(&s, stack.key("acme"), ask("Identical question", json!({}))).await;
    assert_eq!(a.status, 200);
    let b = chat(
        &s,
        stack.key("globex"),
        ask("Identical question", json!({})),
    )
    .await;
    assert_eq!(
        b.body["cached"], false,
        "globex got acme's cached answer: {}",
        b.body
    );
    assert_eq!(stack.model_calls(), 2);
    // Each tenant does hit its own entry.
    assert_eq!(
        chat(
            &s,
            stack.key("globex"),
            ask("Identical question", json!({}))
        )
        .await
        .body["cached"],
        true
    );
    assert_eq!(
        chat(&s, stack.key("acme"), ask("Identical question", json!({})))
            .await
            .body["cached"],
        true
    );
    assert_eq!(stack.model_calls(), 2);
}

#[tokio::test]
async fn bypass_refresh_and_cacheable_prompts() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    chat(&s, key, ask("Modes", json!({}))).await;
    let r = chat(&s, key, ask("Modes", json!({"cache": "bypass"}))).await;
    assert_eq!(r.body["cached"], false);
    let r = chat(&s, key, ask("Modes", json!({"cache": "refresh"}))).await;
    assert_eq!(r.body["cached"], false);
    assert_eq!(stack.model_calls(), 3);
    assert_eq!(
        chat(&s, key, ask("Modes", json!({}))).await.body["cached"],
        true
    );
    assert_eq!(stack.model_calls(), 3);

    // `summarize` is marked cacheable: cached at its own temperature, without asking.
    let body = json!({"prompt": "summarize", "variables": {"text": "Caches save money."}});
    assert_eq!(chat(&s, key, body.clone()).await.body["cached"], false);
    let r = chat(&s, key, body).await;
    assert_eq!(r.body["cached"], true);
    assert_eq!(r.body["prompt"]["name"], "summarize");
    assert_eq!(stack.model_calls(), 4);
}

#[tokio::test]
async fn expired_entries_are_misses_even_before_dynamodb_deletes_them() {
    let stack = Stack::start().await;
    // The cache reads expiry from this clock: the test moves it instead of sleeping.
    let clock = Arc::new(quarry_core::ports::ManualClock::new());
    let options = chat_handler::Options {
        cache_ttl: Duration::from_secs(1),
        ..options()
    };
    let ports = quarry_aws::ports_from_sdk(&stack.sdk, &stack.settings).with_clock(clock.clone());
    let s = Arc::new(chat_handler::AppState::with_ports(
        chat_handler::HandlerPorts::from_sdk_ports(&ports),
        stack.settings.clone(),
        options,
    ));
    chat(&s, stack.key("acme"), ask("Short-lived", json!({}))).await;
    assert_eq!(
        chat(&s, stack.key("acme"), ask("Short-lived", json!({})))
            .await
            .body["cached"],
        true
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        chat(&s, stack.key("acme"), ask("Short-lived", json!({})))
            .await
            .body["cached"],
        false
    );
    assert_eq!(stack.model_calls(), 2);
}

#[tokio::test]
async fn a_streaming_request_is_served_from_the_cache_as_a_replayed_stream() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let first = chat(
        &s,
        stack.key("acme"),
        ask("Stream me from the cache", json!({})),
    )
    .await;
    let url = serve(s.clone()).await;
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat"))
        .bearer_auth(stack.key("acme"))
        .json(&ask("Stream me from the cache", json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(response).await;
    let start: Value = serde_json::from_str(&events[0].2).unwrap();
    assert_eq!(start["cached"], true);
    let text: String = events
        .iter()
        .filter(|(_, e, _)| e == "delta")
        .map(|(_, _, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, first.body["output"]["text"].as_str().unwrap());
    assert_eq!(events.last().unwrap().1, "done");
    assert_eq!(stack.model_calls(), 1);
}

#[tokio::test]
async fn cache_errors_fail_open() {
    let stack = Stack::start().await;
    let mut settings = stack.settings.clone();
    settings.cache_table = "no-such-table".into();
    let s = Arc::new(chat_handler::AppState::from_sdk(
        &stack.sdk,
        settings,
        options(),
    ));
    for _ in 0..2 {
        let r = chat(&s, stack.key("acme"), ask("Cache is down", json!({}))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["cached"], false);
    }
    assert_eq!(stack.model_calls(), 2);
}

async fn lookup_call(
    state: &Arc<cache_lookup::CacheState>,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    let request = match body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            request.body(axum::body::Body::from(b.to_string())).unwrap()
        }
        None => request.body(axum::body::Body::empty()).unwrap(),
    };
    json_reply(
        cache_lookup::app(state.clone())
            .oneshot(request)
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn cache_lookup_answers_from_the_cache_only_and_admins_purge() {
    let stack = Stack::start().await;
    let chat_state = state(&stack, options());
    let options = cache_lookup::CacheOptions::from_lookup(|_| None).unwrap();
    let lookup_state = Arc::new(cache_lookup::CacheState::from_sdk(
        &stack.sdk,
        &stack.settings,
        options,
    ));
    let key = stack.key("acme");

    // Nothing cached yet: 404, and no model call.
    let (status, body) = lookup_call(
        &lookup_state,
        "POST",
        "/v1/cache/lookup",
        key,
        Some(ask("Look me up", json!({}))),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let answered = chat(&chat_state, key, ask("Look me up", json!({}))).await;
    let (status, body) = lookup_call(
        &lookup_state,
        "POST",
        "/v1/cache/lookup",
        key,
        Some(ask("Look me up", json!({}))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cached"], true);
    assert_eq!(body["output"], answered.body["output"]);
    // Another tenant's lookup of the same request misses.
    let (status, _) = lookup_call(
        &lookup_state,
        "POST",
        "/v1/cache/lookup",
        stack.key("globex"),
        Some(ask("Look me up", json!({}))),
    )
    .await;
    assert_eq!(status, 404);
    // A request that is never cached says so.
    let (status, body) = lookup_call(
        &lookup_state,
        "POST",
        "/v1/cache/lookup",
        key,
        Some(ask("x", json!({"temperature": 0.5}))),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never cached")
    );

    let (status, stats) = lookup_call(&lookup_state, "GET", "/v1/cache/stats", key, None).await;
    assert_eq!(
        (status, stats["entries"].clone()),
        (200, json!(1)),
        "{stats}"
    );
    // Two misses (the first lookup, the chat that answered), one hit, and what it saved.
    assert_eq!(
        (stats["hits"].clone(), stats["misses"].clone()),
        (json!(1), json!(2)),
        "{stats}"
    );
    assert_eq!(stats["hit_rate"], 0.333, "{stats}");
    let saved = stats["saved_usd"].as_str().unwrap();
    assert_eq!(
        saved,
        answered.body["cost_usd"].as_str().unwrap(),
        "a hit saves the answer's cost: {stats}"
    );
    assert_eq!(stats["prompts"]["-"]["hits"], 1, "{stats}");

    let (status, body) = lookup_call(&lookup_state, "DELETE", "/v1/cache", key, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = lookup_call(
        &lookup_state,
        "DELETE",
        "/v1/cache",
        stack.admin_key(),
        None,
    )
    .await;
    assert_eq!((status, body["deleted"].clone()), (200, json!(1)), "{body}");
    let (status, _) = lookup_call(
        &lookup_state,
        "POST",
        "/v1/cache/lookup",
        key,
        Some(ask("Look me up", json!({}))),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(stack.model_calls(), 1, "cache-lookup never calls a model");
    let _ = call;
}

/// An admin key administers its own tenant only; another tenant's cache needs an operator
/// credential.
#[tokio::test]
async fn an_admin_key_purges_its_own_tenant_only() {
    let stack = Stack::start().await;
    let mut options = cache_lookup::CacheOptions::from_lookup(|_| None).unwrap();
    // The directory changes below: read it on every request.
    options.config_max_age = std::time::Duration::ZERO;
    let lookup = Arc::new(cache_lookup::CacheState::from_sdk(
        &stack.sdk,
        &stack.settings,
        options,
    ));
    common::add_tenant(&stack, "victim", json!({"allowed_tiers": ["*"]})).await;
    let admin = stack.admin_key();
    for path in [
        "/v1/cache?tenant=victim",
        "/v1/cache?tenant=victim&prompt=x",
    ] {
        let (status, body) = lookup_call(&lookup, "DELETE", path, admin, None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("operator"),
            "{body}"
        );
    }
    let (status, body) = lookup_call(&lookup, "DELETE", "/v1/cache", admin, None).await;
    assert_eq!(status, 200, "its own tenant: {body}");

    // An operator key (issued by the operations team) may act on any tenant.
    let operator = quarry_admin::tenants::new_api_key();
    common::edit_directory(&stack, |dir| {
        dir.keys.insert(
            quarry_core::tenancy::hash_key(&operator),
            quarry_core::tenancy::KeyEntry {
                tenant: "acme".into(),
                admin: false,
                operator: true,
                label: Some("ops".into()),
            },
        );
    })
    .await;
    let (status, body) = lookup_call(
        &lookup,
        "DELETE",
        "/v1/cache?tenant=victim",
        &operator,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "victim");
}
