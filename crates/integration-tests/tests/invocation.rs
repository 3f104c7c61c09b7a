//! The invocation layer end to end, through the chat API against moto and the emulator:
//! retries, fallback, validation, deadlines and exact cost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use bedrock_emulator::ErrorKind;
use common::{chat, fault, options, state};
use quarry_testkit::Stack;
use serde_json::json;

const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const NOVA_LITE: &str = "amazon.nova-lite-v1:0";

fn hello() -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": "Hello"}], "tier": "fast"})
}

#[tokio::test]
async fn primary_throttled_on_every_call_answers_from_the_fallback_and_says_why() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| {
        f.outage = Some(ErrorKind::ThrottlingException)
    });
    let s = state(&stack, options());
    let r = chat(&s, stack.key("acme"), hello()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["model"], format!("us.{NOVA_LITE}"));
    assert_eq!(
        r.body["fallbacks"],
        json!([{"model": format!("us.{HAIKU}"), "reason": "throttled", "attempts": 3}])
    );
    let emu = stack.emulator.state();
    assert_eq!(emu.calls(Some("Converse"), Some(HAIKU)), 3);
    assert_eq!(emu.calls(Some("Converse"), Some(NOVA_LITE)), 1);
}

#[tokio::test]
async fn primary_throttled_twice_answers_on_the_third_attempt() {
    let stack = Stack::start().await;
    fault(&stack, HAIKU, |f| f.throttle_next = 2);
    let s = state(&stack, options());
    let r = chat(&s, stack.key("acme"), hello()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["model"], format!("us.{HAIKU}"));
    assert_eq!(r.body["fallbacks"], json!([]));
    assert_eq!(
        stack.emulator.state().calls(Some("Converse"), Some(HAIKU)),
        3
    );
    assert_eq!(
        stack
            .emulator
            .state()
            .calls(Some("Converse"), Some(NOVA_LITE)),
        0
    );
}

#[tokio::test]
async fn a_validation_error_is_not_retried_nor_fallen_back_from() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    // Over Claude 3.5 Haiku's 8,192-token output limit: Bedrock's ValidationException.
    let r = chat(
        &s,
        stack.key("acme"),
        json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 9000}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "model_validation_error");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model limit"),
        "{}",
        r.body
    );
    assert_eq!(stack.model_calls(), 1);
}

#[tokio::test]
async fn every_model_down_fails_clearly_before_the_deadline() {
    let stack = Stack::start().await;
    fault(&stack, "*", |f| {
        f.outage = Some(ErrorKind::ServiceUnavailableException)
    });
    let budget = Duration::from_secs(3);
    let s = state(
        &stack,
        chat_handler::Options {
            request_timeout: budget,
            ..options()
        },
    );
    let started = Instant::now();
    let r = chat(&s, stack.key("acme"), hello()).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < budget,
        "answered after {elapsed:?}, budget {budget:?}"
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "models_unavailable");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("us.{HAIKU} (3x service_unavailable)")),
        "{message}"
    );
    assert!(
        message.contains(&format!("us.{NOVA_LITE} (3x service_unavailable)")),
        "{message}"
    );
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn slow_models_end_in_a_504_inside_the_budget() {
    let stack = Stack::start().await;
    // Every model takes 10 s to its first token; the request has 2 s.
    fault(&stack, "*", |f| f.slow_ms = 10_000);
    let budget = Duration::from_secs(2);
    let s = state(
        &stack,
        chat_handler::Options {
            request_timeout: budget,
            ..options()
        },
    );
    let started = Instant::now();
    let r = chat(&s, stack.key("acme"), hello()).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < budget + Duration::from_millis(250),
        "answered after {elapsed:?}, budget {budget:?}"
    );
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.body["error"]["type"], "deadline_exceeded");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("us.{HAIKU}")),
        "{}",
        r.body
    );
}

/// USD per million tokens as a decimal string -> micro-USD per million tokens.
fn micros(price: &str) -> u128 {
    let (whole, frac) = price.split_once('.').unwrap_or((price, ""));
    whole.parse::<u128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<u128>().unwrap()
}

#[tokio::test]
async fn cost_is_tokens_times_prices_to_the_micro_dollar_with_cache_tokens() {
    let stack = Stack::start().await;
    // A prompt with a long system prompt and prompt caching: the first call writes the
    // cache, the second reads it.
    let spec: quarry_core::prompts::PromptSpec = serde_json::from_value(json!({
        "name": "long-context",
        "system": "You are a meticulous analyst. ".repeat(400),
        "template": "Answer: {{ q }}",
        "tier": "fast",
        "prompt_caching": true,
        "variables": {"q": {"type": "string"}}
    }))
    .unwrap();
    let ssm = quarry_aws::ssm::SsmParams::new(&stack.sdk);
    quarry_admin::infra::push_prompts(&ssm, &stack.settings, &[spec])
        .await
        .unwrap();
    let s = state(&stack, options());
    let pricing: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(quarry_testkit::workspace_root().join("infra/pricing.yaml"))
            .unwrap(),
    )
    .unwrap();
    let price = &pricing["models"][HAIKU];
    let p = |k: &str| micros(price[k].as_str().unwrap());

    let mut saw = (false, false);
    for _ in 0..2 {
        let r = chat(
            &s,
            stack.key("acme"),
            json!({"prompt": "long-context", "variables": {"q": "why?"}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let u = &r.body["usage"];
        let t = |k: &str| u128::from(u[k].as_u64().unwrap());
        let pico = t("input_tokens") * p("input")
            + t("output_tokens") * p("output")
            + t("cache_read_tokens") * p("cache_read")
            + t("cache_write_tokens") * p("cache_write");
        let expected = (pico + 500_000) / 1_000_000;
        let reported = r.body["cost_usd"].as_str().unwrap();
        assert_eq!(micros(reported), expected, "usage {u}, cost {reported}");
        saw.0 |= t("cache_write_tokens") > 0;
        saw.1 |= t("cache_read_tokens") > 0;
    }
    assert_eq!(
        saw,
        (true, true),
        "expected a cache write then a cache read"
    );
}

/// Bedrock's rarer stop reasons, mapped exactly: a full context window is OpenAI's `length`,
/// a content filter its `content_filter`, and output the model could not form a typed 502
/// (charged, since Bedrock billed the call).
#[tokio::test]
async fn bedrocks_rarer_stop_reasons_are_mapped_exactly() {
    use bedrock_emulator::StopReason as Bedrock;
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let ask = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
    for (stop, finish) in [
        (Bedrock::ModelContextWindowExceeded, "length"),
        (Bedrock::ContentFiltered, "content_filter"),
        (Bedrock::MaxTokens, "length"),
    ] {
        fault(&stack, "*", |f| f.stop_reason = Some(stop));
        let r = common::call(
            &s,
            "POST",
            "/v1/chat/completions",
            Some(key),
            Some(ask.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["choices"][0]["finish_reason"], finish,
            "{stop:?}: {}",
            r.body
        );
    }
    fault(&stack, "*", |f| {
        f.stop_reason = Some(Bedrock::ModelContextWindowExceeded)
    });
    let r = chat(
        &s,
        key,
        json!({"messages": [{"role": "user", "content": "native"}]}),
    )
    .await;
    assert_eq!(
        r.body["stop_reason"], "model_context_window_exceeded",
        "{}",
        r.body
    );

    for stop in [Bedrock::MalformedToolUse, Bedrock::MalformedModelOutput] {
        fault(&stack, "*", |f| f.stop_reason = Some(stop));
        let r = chat(
            &s,
            key,
            json!({"messages": [{"role": "user", "content": format!("{stop:?}")}]}),
        )
        .await;
        assert_eq!(r.status, 502, "{}", r.body);
        assert_eq!(
            r.body["error"]["type"], "invalid_model_output",
            "{}",
            r.body
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("malformed"),
            "{}",
            r.body
        );
    }
    let month = quarry_aws::ledger::Buckets::of(chrono::Utc::now().timestamp_millis()).month;
    let total = stack
        .ledger()
        .get(&quarry_aws::ledger::month_pk("acme", &month), "TOTAL")
        .await
        .unwrap();
    assert_eq!(
        total.requests, 6,
        "every billed call is charged, the malformed ones too"
    );
}

/// Tags (and OpenAI's `user`) reach Converse `requestMetadata`, for Bedrock's invocation logs.
#[tokio::test]
async fn tags_and_the_user_reach_bedrocks_request_metadata() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");
    let r = common::call(
        &s,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(
            json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}],
                    "metadata": {"feature": "search"}, "user": "user-42"}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = &stack.emulator.state().recorded(1)[0].body;
    assert_eq!(
        sent["requestMetadata"],
        json!({"feature": "search", "user": "user-42"}),
        "{sent}"
    );
    // Without tags, none is sent.
    chat(
        &s,
        key,
        json!({"messages": [{"role": "user", "content": "plain"}]}),
    )
    .await;
    let sent = &stack.emulator.state().recorded(1)[0].body;
    assert!(sent.get("requestMetadata").is_none(), "{sent}");
}
