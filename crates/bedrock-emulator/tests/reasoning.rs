//! Anthropic extended thinking through the SDK: Anthropic's rules, signed reasoning blocks
//! in Converse, ConverseStream and InvokeModel, and the signatures checked on the next turn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::operation::converse::builders::ConverseFluentBuilder;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, ContentBlock, ConverseStreamOutput as Event, InferenceConfiguration,
    ReasoningContentBlock, ReasoningTextBlock, ResponseStream, ToolChoice, ToolResultBlock,
    ToolResultContentBlock,
};
use common::*;
use serde_json::{Value, json};

fn thinking(budget: i64) -> aws_smithy_types::Document {
    to_document(&json!({"thinking": {"type": "enabled", "budget_tokens": budget}}))
}

fn thinking_call(c: &Client, model: &str, budget: i64) -> ConverseFluentBuilder {
    c.converse()
        .model_id(model)
        .additional_model_request_fields(thinking(budget))
        .inference_config(InferenceConfiguration::builder().max_tokens(4000).build())
}

fn words(text: &str) -> i32 {
    text.split_whitespace().count() as i32
}

#[tokio::test]
async fn thinking_answers_with_signed_reasoning_first() {
    let emu = emulator().await;
    let c = client(&emu);
    let out = thinking_call(&c, SONNET_37, 2048)
        .messages(user("Why is the sky blue?"))
        .send()
        .await
        .unwrap();
    let blocks = content(&out);
    assert_eq!(blocks.len(), 2);
    let reasoning = blocks[0]
        .as_reasoning_content()
        .unwrap()
        .as_reasoning_text()
        .unwrap();
    assert!(!reasoning.text().is_empty());
    assert!(reasoning.signature().is_some_and(|s| s.len() >= 40));
    let text = blocks[1].as_text().unwrap();
    // Reasoning tokens are output tokens.
    assert_eq!(
        out.usage().unwrap().output_tokens(),
        words(reasoning.text()) + words(text)
    );
    // Thinking disabled: no reasoning.
    let off = c
        .converse()
        .model_id(SONNET_37)
        .additional_model_request_fields(to_document(&json!({"thinking": {"type": "disabled"}})))
        .messages(user("Why is the sky blue?"))
        .send()
        .await
        .unwrap();
    assert!(content(&off)[0].is_text());
}

#[tokio::test]
async fn thinking_streams_reasoning_then_signature() {
    let emu = emulator().await;
    let c = client(&emu);
    let whole = thinking_call(&c, SONNET_4, 1024)
        .messages(user("Plan a trip"))
        .send()
        .await
        .unwrap();
    let blocks = content(&whole);
    let reasoning = blocks[0]
        .as_reasoning_content()
        .unwrap()
        .as_reasoning_text()
        .unwrap();
    let streamed = events(
        c.converse_stream()
            .model_id(SONNET_4)
            .additional_model_request_fields(thinking(1024))
            .inference_config(InferenceConfiguration::builder().max_tokens(4000).build())
            .messages(user("Plan a trip"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut thought = String::new();
    let mut signatures = Vec::new();
    let mut order = Vec::new();
    for event in &streamed {
        match event {
            Event::ContentBlockDelta(d) => {
                let index = d.content_block_index();
                match d.delta().unwrap() {
                    aws_sdk_bedrockruntime::types::ContentBlockDelta::ReasoningContent(r) => {
                        assert_eq!(index, 0);
                        match r {
                            aws_sdk_bedrockruntime::types::ReasoningContentBlockDelta::Text(t) => {
                                assert!(signatures.is_empty(), "text after the signature");
                                thought.push_str(t);
                                order.push("thinking");
                            }
                            aws_sdk_bedrockruntime::types::ReasoningContentBlockDelta::Signature(s) => {
                                signatures.push(s.clone());
                                order.push("signature");
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    aws_sdk_bedrockruntime::types::ContentBlockDelta::Text(_) => {
                        assert_eq!(index, 1);
                        order.push("text");
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Event::ContentBlockStop(s) => order.push(if s.content_block_index() == 0 {
                "stop0"
            } else {
                "stop1"
            }),
            _ => {}
        }
    }
    assert_eq!(thought, reasoning.text());
    assert_eq!(signatures, [reasoning.signature().unwrap().to_owned()]);
    let signature_at = order.iter().position(|o| *o == "signature").unwrap();
    assert_eq!(order[signature_at + 1], "stop0");
    assert_eq!(order[signature_at + 2], "text");
    assert_eq!(order.last(), Some(&"stop1"));
    assert_eq!(
        streamed_text(&streamed),
        blocks[1].as_text().unwrap().as_str()
    );
}

#[tokio::test]
async fn thinking_rules_are_anthropics() {
    let emu = emulator().await;
    let c = client(&emu);
    let hi = || user("hi");
    let m = validation_message(
        thinking_call(&c, SONNET_37, 1000)
            .messages(hi())
            .send()
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("budget_tokens: Input should be greater than or equal to 1024"),
        "{m}"
    );
    let m = validation_message(
        thinking_call(&c, SONNET_37, 4000)
            .messages(hi())
            .send()
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("`max_tokens` must be greater than `thinking.budget_tokens`"),
        "{m}"
    );
    let with = |config: InferenceConfiguration| {
        c.converse()
            .model_id(SONNET_37)
            .additional_model_request_fields(thinking(1024))
            .inference_config(config)
            .messages(hi())
            .send()
    };
    let m = validation_message(
        with(
            InferenceConfiguration::builder()
                .max_tokens(2000)
                .temperature(0.5)
                .build(),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        m.contains("`temperature` may only be set to 1 when thinking is enabled"),
        "{m}"
    );
    with(
        InferenceConfiguration::builder()
            .max_tokens(2000)
            .temperature(1.0)
            .build(),
    )
    .await
    .unwrap();
    let m = validation_message(
        with(
            InferenceConfiguration::builder()
                .max_tokens(2000)
                .top_p(0.5)
                .build(),
        )
        .await
        .unwrap_err(),
    );
    assert!(m.contains("`top_p`"), "{m}");
    let m = validation_message(
        thinking_call(&c, SONNET_37, 1024)
            .messages(user("Weather?"))
            .tool_config(weather_tool(Some(ToolChoice::Any(
                AnyToolChoice::builder().build(),
            ))))
            .send()
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("Thinking may not be enabled when tool_choice forces tool use."),
        "{m}"
    );

    // Models without reasoning refuse `thinking`; Anthropic models refuse unknown keys.
    let m = validation_message(
        thinking_call(&c, SONNET_35, 1024)
            .messages(hi())
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        m,
        "The model returned the following errors: thinking: Extra inputs are not permitted"
    );
    let fields = |model: &'static str, v: Value| {
        c.converse()
            .model_id(model)
            .additional_model_request_fields(to_document(&v))
            .messages(hi())
            .send()
    };
    let m = validation_message(fields(HAIKU, json!({"bogus": 1})).await.unwrap_err());
    assert!(m.contains("bogus: Extra inputs are not permitted"), "{m}");
    fields(HAIKU, json!({"top_k": 5})).await.unwrap();
    fields(NOVA, json!({"inferenceConfig": {"topK": 5}}))
        .await
        .unwrap();
}

fn reasoning_block(text: &str, signature: Option<&str>) -> ContentBlock {
    ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
        ReasoningTextBlock::builder()
            .text(text)
            .set_signature(signature.map(str::to_owned))
            .build()
            .unwrap(),
    ))
}

#[tokio::test]
async fn reasoning_sent_back_must_carry_its_signature() {
    let emu = emulator().await;
    let c = client(&emu);
    let first = thinking_call(&c, SONNET_37, 1024)
        .messages(user("Why is the sky blue?"))
        .send()
        .await
        .unwrap();
    let blocks = content(&first);
    let r = blocks[0]
        .as_reasoning_content()
        .unwrap()
        .as_reasoning_text()
        .unwrap()
        .clone();
    let next = |reasoning: ContentBlock| {
        thinking_call(&c, SONNET_37, 1024)
            .messages(user("Why is the sky blue?"))
            .messages(assistant_blocks(vec![reasoning, blocks[1].clone()]))
            .messages(user("And at sunset?"))
            .send()
    };
    next(blocks[0].clone()).await.unwrap();
    let tampered = format!("{} Also, I lied.", r.text());
    for bad in [
        reasoning_block(&tampered, r.signature()),
        reasoning_block(r.text(), None),
        reasoning_block(r.text(), Some("c2lnbmF0dXJl")),
    ] {
        let m = validation_message(next(bad).await.unwrap_err());
        assert_eq!(
            m,
            "The model returned the following errors: messages.1.content.0: Invalid `signature` in `thinking` block"
        );
    }
    let redacted = ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(
        Blob::new(b"opaque".to_vec()),
    ));
    next(redacted).await.unwrap();
}

#[tokio::test]
async fn thinking_with_tools_needs_the_reasoning_block_back() {
    let emu = emulator().await;
    let c = client(&emu);
    let question = "Please call get_weather for Oslo";
    let first = thinking_call(&c, SONNET_4, 1024)
        .messages(user(question))
        .tool_config(weather_tool(None))
        .send()
        .await
        .unwrap();
    let blocks = content(&first);
    assert!(blocks[0].is_reasoning_content());
    assert!(blocks[1].is_text());
    let call = blocks[2].as_tool_use().unwrap();
    assert_eq!(first.stop_reason().as_str(), "tool_use");
    let result = ContentBlock::ToolResult(
        ToolResultBlock::builder()
            .tool_use_id(call.tool_use_id())
            .content(ToolResultContentBlock::Text("12 degrees".into()))
            .build()
            .unwrap(),
    );
    let answer = |assistant: Vec<ContentBlock>| {
        thinking_call(&c, SONNET_4, 1024)
            .messages(user(question))
            .messages(assistant_blocks(assistant))
            .messages(user_blocks(vec![result.clone()]))
            .tool_config(weather_tool(None))
            .send()
    };
    let m = validation_message(answer(blocks[1..].to_vec()).await.unwrap_err());
    assert!(
        m.contains("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is enabled, a final `assistant` message must start with a thinking block"),
        "{m}"
    );
    let done = answer(blocks.clone()).await.unwrap();
    // The turn already thought: the answer to the tool result is text only.
    let answer_blocks = content(&done);
    assert_eq!(answer_blocks.len(), 1);
    assert!(
        answer_blocks[0]
            .as_text()
            .unwrap()
            .starts_with("Based on the tool result")
    );
    // Without thinking, the same history needs no reasoning block.
    c.converse()
        .model_id(SONNET_4)
        .messages(user(question))
        .messages(assistant_blocks(blocks[1..].to_vec()))
        .messages(user_blocks(vec![result.clone()]))
        .tool_config(weather_tool(None))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn invoke_model_thinking_in_anthropics_shape() {
    let emu = emulator().await;
    let c = client(&emu);
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 3000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Think first"}]
    });
    let out = c
        .invoke_model()
        .model_id(SONNET_37)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
    assert_eq!(answer["content"][0]["type"], "thinking");
    assert!(answer["content"][0]["signature"].is_string());
    assert_eq!(answer["content"][1]["type"], "text");

    let mut stream = c
        .invoke_model_with_response_stream()
        .model_id(SONNET_37)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap()
        .body;
    let mut delta_types = Vec::new();
    while let Some(event) = stream.recv().await.unwrap() {
        let ResponseStream::Chunk(part) = event else {
            panic!("unexpected {event:?}")
        };
        let chunk: Value = serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap();
        if chunk["type"] == "content_block_delta" {
            let t = chunk["delta"]["type"].as_str().unwrap().to_owned();
            if delta_types.last() != Some(&t) {
                delta_types.push(t);
            }
        }
    }
    assert_eq!(
        delta_types,
        ["thinking_delta", "signature_delta", "text_delta"]
    );

    // A model without reasoning refuses the field, as Bedrock does.
    let err = c
        .invoke_model()
        .model_id(HAIKU)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_validation_exception());
}

#[tokio::test]
async fn stop_reason_fault_still_ends_the_answer() {
    let emu = emulator().await;
    let c = client(&emu);
    let r = reqwest::Client::new()
        .post(format!("{}/_emulator/faults", emu.url()))
        .json(&json!({"model": SONNET_37, "stop_reason": "content_filtered"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let out = thinking_call(&c, SONNET_37, 1024)
        .messages(user("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason().as_str(), "content_filtered");
    assert!(content(&out)[0].is_reasoning_content());
    let streamed = events(
        c.converse_stream()
            .model_id(SONNET_37)
            .messages(user("hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let stop = streamed.iter().find_map(|e| match e {
        Event::MessageStop(s) => Some(s.stop_reason().as_str().to_owned()),
        _ => None,
    });
    assert_eq!(stop.as_deref(), Some("content_filtered"));
}
