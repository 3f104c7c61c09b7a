//! InvokeModel and InvokeModelWithResponseStream in each model family's native body,
//! through the unmodified SDK: Amazon Nova's `messages-v1`, Meta Llama 3's prompt body,
//! and the emulator's stand-in body for the providers it does not speak natively.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::ResponseStream;
use serde_json::{Value, json};

mod common;

use common::embeddings::invoke;
use common::{
    HAIKU, LLAMA, MISTRAL, NOVA, client, client_seeing_headers, emulator, set_faults,
    validation_message,
};

/// Every chunk of an InvokeModelWithResponseStream answer, decoded.
async fn chunks(c: &Client, model: &str, body: &Value) -> Vec<Value> {
    let mut stream = c
        .invoke_model_with_response_stream()
        .model_id(model)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap()
        .body;
    let mut all = Vec::new();
    while let Some(event) = stream.recv().await.unwrap() {
        let ResponseStream::Chunk(part) = event else {
            panic!("unexpected event {event:?}")
        };
        all.push(serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap());
    }
    all
}

fn nova(text: &str) -> Value {
    json!({
        "schemaVersion": "messages-v1",
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0.3, "topP": 0.9, "topK": 20}
    })
}

#[tokio::test]
async fn nova_answers_invoke_model_in_its_own_shape() {
    let emu = emulator().await;
    let (c, seen) = client_seeing_headers(&emu);
    let out = invoke(&c, &format!("us.{NOVA}"), &nova("Name a colour."))
        .await
        .unwrap();
    let content = out["output"]["message"]["content"].as_array().unwrap();
    assert_eq!(out["output"]["message"]["role"], "assistant");
    assert!(!content[0]["text"].as_str().unwrap().is_empty(), "{out}");
    assert_eq!(out["stopReason"], "end_turn");
    let usage = &out["usage"];
    let (input, output) = (
        usage["inputTokens"].as_u64().unwrap(),
        usage["outputTokens"].as_u64().unwrap(),
    );
    assert!(input > 0 && output > 0, "{usage}");
    assert_eq!(usage["totalTokens"].as_u64().unwrap(), input + output);
    assert_eq!(usage["cacheReadInputTokenCount"], 0);
    assert_eq!(usage["cacheWriteInputTokenCount"], 0);
    assert_eq!(seen.number("x-amzn-bedrock-input-token-count"), input);
    assert_eq!(seen.number("x-amzn-bedrock-output-token-count"), output);
    // Only Nova's fields: nothing of Converse's response or another family's body.
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");

    // Snake-case inference keys work too, and a short budget ends at max_tokens.
    let body = json!({
        "messages": [{"role": "user", "content": [{"text": "Tell me a long story."}]}],
        "inferenceConfig": {"max_new_tokens": 3, "top_p": 0.5, "top_k": 5}
    });
    let out = invoke(&c, NOVA, &body).await.unwrap();
    assert_eq!(out["stopReason"], "max_tokens");
    assert_eq!(out["usage"]["outputTokens"], 3);
}

#[tokio::test]
async fn nova_calls_tools_and_reads_their_results() {
    let emu = emulator().await;
    let c = client(&emu);
    let tool_config = json!({
        "tools": [{"toolSpec": {
            "name": "get_weather",
            "description": "Weather for a city",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}
        }}],
        "toolChoice": {"auto": {}}
    });
    let ask = json!({"role": "user", "content": [{"text": "Use get_weather for Paris."}]});
    let out = invoke(
        &c,
        NOVA,
        &json!({"messages": [ask], "toolConfig": tool_config}),
    )
    .await
    .unwrap();
    assert_eq!(out["stopReason"], "tool_use", "{out}");
    let call = out["output"]["message"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| b.get("toolUse"))
        .unwrap()
        .clone();
    assert_eq!(call["name"], "get_weather");
    assert!(call["input"]["city"].is_string(), "{call}");

    let body = json!({
        "messages": [
            ask,
            {"role": "assistant", "content": [{"toolUse": call}]},
            {"role": "user", "content": [{"toolResult": {
                "toolUseId": call["toolUseId"],
                "content": [{"json": {"forecast": "sunny"}}],
                "status": "success"
            }}]}
        ],
        "toolConfig": tool_config
    });
    let out = invoke(&c, NOVA, &body).await.unwrap();
    assert_eq!(out["stopReason"], "end_turn", "{out}");
    assert!(out["output"]["message"]["content"][0]["text"].is_string());

    // Streamed, the call opens its block and sends its input in pieces.
    let body = json!({"messages": [ask], "toolConfig": tool_config});
    let all = chunks(&c, NOVA, &body).await;
    let start = all.iter().find_map(|c| c.get("contentBlockStart")).unwrap();
    assert_eq!(start["start"]["toolUse"]["name"], "get_weather");
    let input: String = all
        .iter()
        .filter_map(|c| c.pointer("/contentBlockDelta/delta/toolUse/input"))
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(serde_json::from_str::<Value>(&input).unwrap()["city"].is_string());
    assert!(
        all.iter()
            .any(|c| c.pointer("/messageStop/stopReason") == Some(&json!("tool_use")))
    );
}

#[tokio::test]
async fn nova_streams_converse_events_as_chunks() {
    let emu = emulator().await;
    let c = client(&emu);
    let body = nova("Name a fruit.");
    let whole = invoke(&c, NOVA, &body).await.unwrap();
    let all = chunks(&c, NOVA, &body).await;

    assert_eq!(all[0], json!({"messageStart": {"role": "assistant"}}));
    let text: String = all
        .iter()
        .filter_map(|c| c.get("contentBlockDelta"))
        .map(|d| {
            assert_eq!(d["contentBlockIndex"], 0);
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, whole["output"]["message"]["content"][0]["text"]);
    let n = all.len();
    assert_eq!(
        all[n - 3],
        json!({"contentBlockStop": {"contentBlockIndex": 0}})
    );
    assert_eq!(
        all[n - 2],
        json!({"messageStop": {"stopReason": "end_turn"}})
    );
    let last = &all[n - 1];
    assert_eq!(
        last["metadata"]["usage"]["inputTokens"],
        whole["usage"]["inputTokens"]
    );
    assert_eq!(
        last["metadata"]["usage"]["outputTokens"],
        whole["usage"]["outputTokens"]
    );
    let metrics = &last["amazon-bedrock-invocationMetrics"];
    assert_eq!(metrics["outputTokenCount"], whole["usage"]["outputTokens"]);
}

#[tokio::test]
async fn nova_refuses_bodies_that_are_not_messages_v1() {
    let emu = emulator().await;
    let c = client(&emu);
    let claude = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hello"}]
    });
    let message = validation_message(invoke(&c, NOVA, &claude).await.unwrap_err());
    assert!(
        message.starts_with(
            "Malformed input request: #: extraneous key [anthropic_version] is not permitted"
        ),
        "{message}"
    );
    assert!(message.ends_with(", please reformat your input and try again."));
    for body in [
        json!({"prompt": "Hello"}),
        json!({"schemaVersion": "messages-v2", "messages": []}),
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}],
               "inferenceConfig": {"max_tokens": 5}}),
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "stream": true}),
    ] {
        let message = validation_message(invoke(&c, NOVA, &body).await.unwrap_err());
        assert!(
            message.starts_with("Malformed input request: #"),
            "{message}"
        );
    }
    // Converse's own checks apply after: a conversation opens with a user turn.
    let message = validation_message(
        invoke(
            &c,
            NOVA,
            &json!({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}),
        )
        .await
        .unwrap_err(),
    );
    assert!(!message.is_empty());
}

fn llama_prompt(text: &str) -> String {
    format!(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
}

#[tokio::test]
async fn llama_answers_its_prompt_body() {
    let emu = emulator().await;
    let c = client(&emu);
    let body = json!({"prompt": llama_prompt("Name a river."), "max_gen_len": 5,
                      "temperature": 0.5, "top_p": 0.9});
    let out = invoke(&c, LLAMA, &body).await.unwrap();
    assert_eq!(out["generation_token_count"], 5);
    assert_eq!(out["stop_reason"], "length");
    assert!(out["prompt_token_count"].as_u64().unwrap() > 0);
    assert!(out["generation"].is_string());

    // The chat template's markers are not part of a line: steering still finds its line.
    let body = json!({"prompt": llama_prompt("Repeat: The Nile is long.")});
    let out = invoke(&c, LLAMA, &body).await.unwrap();
    assert_eq!(out["generation"], "The Nile is long.");
    assert_eq!(out["stop_reason"], "stop");

    let all = chunks(&c, LLAMA, &body).await;
    let text: String = all
        .iter()
        .map(|c| c["generation"].as_str().unwrap())
        .collect();
    assert_eq!(text, "The Nile is long.");
    assert_eq!(all[0]["prompt_token_count"], out["prompt_token_count"]);
    let last = all.last().unwrap();
    assert_eq!(last["stop_reason"], "stop");
    assert_eq!(
        last["generation_token_count"],
        out["generation_token_count"]
    );
    assert!(last["amazon-bedrock-invocationMetrics"]["inputTokenCount"].is_u64());
    assert!(
        all[..all.len() - 1]
            .iter()
            .all(|c| c["stop_reason"].is_null())
    );
}

#[tokio::test]
async fn llama_refuses_fields_it_does_not_have() {
    let emu = emulator().await;
    let c = client(&emu);
    let message = validation_message(
        invoke(&c, LLAMA, &json!({"prompt": "Hi", "max_tokens": 5}))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        message,
        "Malformed input request: #: extraneous key [max_tokens] is not permitted, please reformat your input and try again."
    );
    let message = validation_message(invoke(&c, LLAMA, &nova("Hi")).await.unwrap_err());
    assert!(
        message.contains("#: required key [prompt] not found"),
        "{message}"
    );
    assert!(message.contains("#: extraneous key [messages] is not permitted"));
}

#[tokio::test]
async fn other_providers_keep_the_stand_in_body() {
    let emu = emulator().await;
    let c = client(&emu);
    let out = invoke(
        &c,
        MISTRAL,
        &json!({"prompt": "Hi", "max_tokens": 5, "stop": ["END"]}),
    )
    .await
    .unwrap();
    assert_eq!(out["generation_token_count"], 5);
    assert_eq!(out["stop_reason"], "length");
    // Claude's body is still Claude's.
    let message = validation_message(invoke(&c, HAIKU, &nova("Hi")).await.unwrap_err());
    assert!(
        message.starts_with("Malformed input request: #: extraneous key ["),
        "{message}"
    );
}

#[tokio::test]
async fn nova_streams_end_at_a_mid_stream_fault() {
    let emu = emulator().await;
    let c = client(&emu);
    set_faults(&emu, json!({"model": NOVA, "mid_stream_error_after": 1})).await;
    let mut stream = c
        .invoke_model_with_response_stream()
        .model_id(NOVA)
        .body(Blob::new(nova("Name a fruit.").to_string()))
        .send()
        .await
        .unwrap()
        .body;
    let mut deltas = 0;
    let failure = loop {
        match stream.recv().await {
            Ok(Some(ResponseStream::Chunk(part))) => {
                let chunk: Value = serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap();
                if chunk.get("contentBlockDelta").is_some() {
                    deltas += 1;
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(deltas, 1);
    let service = failure.into_service_error();
    assert!(service.is_model_stream_error_exception(), "{service:?}");
}
