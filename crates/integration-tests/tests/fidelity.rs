//! The Converse surface beyond text through the native API, against the emulator (as strict
//! as Bedrock): images and documents, reasoning sent back signed, the chain skipping models
//! that cannot, a model's own limits moving to the next model, and a prompt router's choice
//! being the model charged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{chat, edit_routing, options, state};
use quarry_testkit::Stack;
use serde_json::{Value, json};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn last_sent(stack: &Stack) -> Value {
    stack.emulator.state().recorded(1)[0].body.clone()
}

#[tokio::test]
async fn images_documents_and_reasoning_through_the_native_api() {
    let stack = Stack::start().await;
    let s = state(&stack, options());
    let key = stack.key("acme");

    // An image on `fast`: Claude 3.5 Haiku sees no images, so Nova Lite answers.
    let r = chat(
        &s,
        key,
        json!({"tier": "fast", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "format": "png", "data": PNG}]}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["model"].as_str().unwrap().contains("nova-lite"));
    let sent = last_sent(&stack);
    assert_eq!(sent["messages"][0]["content"][1]["image"]["format"], "png");

    // A document with citations: the quote is the document's own text.
    let doc = "Revenue grew 12 percent in Q3. Costs were flat.";
    let r = chat(
        &s,
        key,
        json!({"tier": "smart", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "How did revenue do?"},
            {"type": "document", "format": "txt", "name": "Q3 report", "text": doc, "citations": true}]}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let citation = &r.body["output"]["citations"][0];
    assert_eq!(citation["title"], "Q3 report", "{}", r.body);
    let (start, end) = (
        citation["location"]["start"].as_u64().unwrap() as usize,
        citation["location"]["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(citation["quote"], doc[start..end]);

    // Parts that break Bedrock's rules are a 400 naming the part, before any call.
    let calls = stack.model_calls();
    for (part, says) in [
        (
            json!({"type": "image", "format": "jpeg", "data": PNG}),
            "png",
        ),
        (
            json!({"type": "document", "format": "txt", "name": "report.txt", "text": "x"}),
            "document name",
        ),
        (
            json!({"type": "document", "format": "pdf", "name": "report", "data": "aGVsbG8="}),
            "PDF",
        ),
    ] {
        let r = chat(
            &s,
            key,
            json!({"tier": "smart", "messages": [{"role": "user", "content": [part]}]}),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["error"]["param"], "messages[0].content[0]");
        assert!(r.body.to_string().contains(says), "{}", r.body);
    }
    assert_eq!(stack.model_calls(), calls);

    // Reasoning: its parts come back signed and go back unchanged on the next turn.
    let first = json!({"role": "user", "content": "Is 91 prime?"});
    let r = chat(
        &s,
        key,
        json!({"tier": "smart", "reasoning": {"budget_tokens": 2000}, "messages": [first]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let output = &r.body["output"];
    assert!(output["reasoning"].as_str().is_some_and(|t| !t.is_empty()));
    let parts = output["reasoning_parts"].as_array().unwrap().clone();
    assert!(parts[0]["signature"].is_string(), "{output}");
    let sent = last_sent(&stack);
    assert_eq!(
        sent["additionalModelRequestFields"]["thinking"],
        json!({"type": "enabled", "budget_tokens": 2000})
    );
    let mut content = parts.clone();
    content.push(json!({"type": "text", "text": output["text"]}));
    let second = json!({"tier": "smart", "reasoning": {"effort": "low"}, "messages": [
        first, {"role": "assistant", "content": content},
        {"role": "user", "content": "And 97?"}]});
    let r = chat(&s, key, second.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(last_sent(&stack)["messages"][1]["content"][0]["reasoningContent"].is_object());

    // Edited reasoning is Bedrock's to refuse (its signature no longer matches).
    let mut forged = second.clone();
    forged["messages"][1]["content"][0]["text"] = json!("I made this up");
    let r = chat(&s, key, forged).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.to_string().contains("signature"), "{}", r.body);

    // Reasoning without its signature cannot be verified: it is left out.
    let mut unsigned = second;
    unsigned["messages"][1]["content"][0]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    let r = chat(&s, key, unsigned).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(last_sent(&stack)["messages"][1]["content"][0]["text"].is_string());

    // The flex tier is reported and priced as served.
    let r = chat(
        &s,
        key,
        json!({"tier": "fast", "service_tier": "flex", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["service_tier"], "flex");
    assert_eq!(last_sent(&stack)["serviceTier"], json!({"type": "flex"}));
}

#[tokio::test]
async fn a_models_own_limit_moves_the_chain_on_and_a_router_charges_its_choice() {
    let mut emulator = bedrock_emulator::EmulatorConfig::builtin();
    // Claude 3.5 Haiku with a tiny context window: Bedrock's ValidationException names it.
    emulator
        .models
        .get_mut("anthropic.claude-3-5-haiku-20241022-v1:0")
        .unwrap()
        .context_window = 20;
    let stack = Stack::start_with(quarry_testkit::Moto::shared().url(), emulator).await;
    let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    edit_routing(&stack, |r| {
        // Known to routing by the base model it is priced and checked as; the trace says
        // which model answered.
        r.application_inference_profiles.insert(
            router.into(),
            "anthropic.claude-sonnet-4-20250514-v1:0".into(),
        );
    })
    .await;
    let s = state(&stack, options());
    let key = stack.key("acme");

    let long = "Tell me about the history of the printing press in Europe. ".repeat(3);
    let r = chat(
        &s,
        key,
        json!({"tier": "fast", "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["model"].as_str().unwrap().contains("nova-lite"));
    assert_eq!(r.body["fallbacks"][0]["reason"], "validation", "{}", r.body);

    // A request that is wrong for every model still stops at the first.
    let r = chat(
        &s,
        key,
        json!({"tier": "fast", "messages": [{"role": "assistant", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // The router picks Claude 3.5 Haiku for a short prompt: charged at Haiku's price, not
    // at the Sonnet 4 price routing knows the router by.
    let r = chat(
        &s,
        key,
        json!({"model": router, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let u = &r.body["usage"];
    let (input, output) = (
        u["input_tokens"].as_u64().unwrap(),
        u["output_tokens"].as_u64().unwrap(),
    );
    // Haiku: $0.80 and $4.00 per million tokens, rounded up to the micro-dollar.
    let micros = (input * 800_000 + output * 4_000_000).div_ceil(1_000_000);
    assert_eq!(
        r.body["cost_usd"],
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000),
        "{}",
        r.body
    );
}
