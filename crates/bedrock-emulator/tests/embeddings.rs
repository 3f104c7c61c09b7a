//! Embedding models through the unmodified aws-sdk-bedrockruntime client: Titan Text
//! Embeddings V2 bodies and usage headers, similarity through the wire, Bedrock's validation
//! errors, the operations embedding models refuse, and faults. Cohere's bodies are in
//! `embeddings_cohere.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{ConverseTokensRequest, CountTokensInput};
use serde_json::json;

mod common;

use common::embeddings::{cosine, floats, ints, invoke, norm, tokens};
use common::{
    COHERE_EMBED, COHERE_EMBED_V4, LLAMA, TITAN_EMBED, client, client_seeing_headers, emulator,
    set_faults, user, validation_message,
};

#[tokio::test]
async fn titan_embeds_at_each_dimension_with_usage_headers() {
    let emu = emulator().await;
    let (c, seen) = client_seeing_headers(&emu);
    let text = "Quarry routes requests to Amazon Bedrock.";
    for (asked, expected) in [
        (None, 1024),
        (Some(256), 256),
        (Some(512), 512),
        (Some(1024), 1024),
    ] {
        let mut body = json!({"inputText": text});
        if let Some(d) = asked {
            body["dimensions"] = json!(d);
        }
        let out = invoke(&c, TITAN_EMBED, &body).await.unwrap();
        let embedding = floats(&out["embedding"]);
        assert_eq!(embedding.len(), expected);
        assert!((norm(&embedding) - 1.0).abs() < 1e-4);
        assert_eq!(out["embeddingsByType"]["float"], out["embedding"]);
        assert!(out["embeddingsByType"].get("binary").is_none());
        assert_eq!(out["inputTextTokenCount"], tokens(text));
        assert_eq!(
            seen.number("x-amzn-bedrock-input-token-count"),
            tokens(text)
        );
        assert_eq!(seen.number("x-amzn-bedrock-output-token-count"), 0);
        assert_eq!(seen.number("x-amzn-bedrock-invocation-latency"), 0);
    }
    // The same text gets the same vector; through a cross-region profile too.
    let a = invoke(&c, TITAN_EMBED, &json!({"inputText": text}))
        .await
        .unwrap();
    let b = invoke(
        &c,
        &format!("us.{TITAN_EMBED}"),
        &json!({"inputText": text}),
    )
    .await
    .unwrap();
    assert_eq!(a["embedding"], b["embedding"]);
}

#[tokio::test]
async fn titan_normalize_off_and_binary_embeddings() {
    let emu = emulator().await;
    let c = client(&emu);
    let text = "A vector that is not normalised";
    let unit = invoke(&c, TITAN_EMBED, &json!({"inputText": text}))
        .await
        .unwrap();
    let raw = invoke(
        &c,
        TITAN_EMBED,
        &json!({"inputText": text, "normalize": false}),
    )
    .await
    .unwrap();
    let (unit, raw_vec) = (floats(&unit["embedding"]), floats(&raw["embedding"]));
    assert!(norm(&raw_vec) > 1.5, "{}", norm(&raw_vec));
    assert!(cosine(&unit, &raw_vec) > 0.9999);

    let out = invoke(
        &c,
        TITAN_EMBED,
        &json!({"inputText": text, "dimensions": 256, "embeddingTypes": ["float", "binary"]}),
    )
    .await
    .unwrap();
    let float = floats(&out["embeddingsByType"]["float"]);
    let bits = ints(&out["embeddingsByType"]["binary"]);
    assert_eq!(bits.len(), 256);
    for (f, b) in float.iter().zip(&bits) {
        assert_eq!(*b, i64::from(*f > 0.0));
    }
    // Binary alone: the float vector stays in `embedding` only.
    let out = invoke(
        &c,
        TITAN_EMBED,
        &json!({"inputText": text, "embeddingTypes": ["binary"]}),
    )
    .await
    .unwrap();
    assert!(out["embeddingsByType"].get("float").is_none());
    assert_eq!(ints(&out["embeddingsByType"]["binary"]).len(), 1024);
    assert_eq!(floats(&out["embedding"]).len(), 1024);
}

#[tokio::test]
async fn similar_texts_get_closer_vectors_through_the_wire() {
    let emu = emulator().await;
    let c = client(&emu);
    let titan = |t: &str| json!({"inputText": t});
    let cohere = |t: &str| json!({"texts": [t], "input_type": "search_document"});
    let cases = [
        (
            "How do I reset my password?",
            "Steps to reset a forgotten password",
            "The weather in Paris is sunny",
        ),
        (
            "The cat sat on the mat",
            "A cat was sitting on the mat",
            "Quarterly revenue grew by ten percent",
        ),
    ];
    for (anchor, similar, unrelated) in cases {
        let mut titan_vecs = Vec::new();
        let mut cohere_vecs = Vec::new();
        for t in [anchor, similar, unrelated] {
            let out = invoke(&c, TITAN_EMBED, &titan(t)).await.unwrap();
            titan_vecs.push(floats(&out["embedding"]));
            let out = invoke(&c, COHERE_EMBED, &cohere(t)).await.unwrap();
            cohere_vecs.push(floats(&out["embeddings"][0]));
        }
        for v in [&titan_vecs, &cohere_vecs] {
            assert!(
                cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2,
                "{anchor}"
            );
        }
    }
    // A query and a document of the same text meet.
    let query = invoke(
        &c,
        COHERE_EMBED,
        &json!({"texts": ["reset password"], "input_type": "search_query"}),
    )
    .await
    .unwrap();
    let doc = invoke(
        &c,
        COHERE_EMBED,
        &json!({"texts": ["reset password"], "input_type": "search_document"}),
    )
    .await
    .unwrap();
    assert!(
        cosine(
            &floats(&query["embeddings"][0]),
            &floats(&doc["embeddings"][0])
        ) > 0.99
    );
}

#[tokio::test]
async fn titan_validation_errors_are_typed() {
    let emu = emulator().await;
    let c = client(&emu);
    let cases = [
        (
            json!({"inputText": ""}),
            "#/inputText: expected minLength: 1, actual: 0",
        ),
        (
            json!({"dimensions": 256}),
            "#: required key [inputText] not found",
        ),
        (
            json!({"inputText": "x", "dimensions": 300}),
            "#/dimensions: 300 is not a valid enum value",
        ),
        (
            json!({"inputText": "x", "dimensions": "256"}),
            "#/dimensions: expected type: Integer, found: String",
        ),
        (
            json!({"inputText": "x", "normalize": "yes"}),
            "#/normalize: expected type: Boolean, found: String",
        ),
        (
            json!({"inputText": "x", "embeddingTypes": ["int8"]}),
            "#/embeddingTypes/0: int8 is not a valid enum value",
        ),
        (
            json!({"inputText": "x", "embeddingTypes": []}),
            "#/embeddingTypes: expected minimum item count: 1, found: 0",
        ),
        (
            json!({"texts": ["x"], "input_type": "search_query"}),
            "#: required key [inputText] not found#: extraneous key [input_type] is not permitted#: extraneous key [texts] is not permitted",
        ),
        (
            json!({"inputText": "a".repeat(50_001)}),
            "#/inputText: expected maxLength: 50000, actual: 50001",
        ),
        (
            json!({"inputText": "a".repeat(40_000)}),
            "400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token count: 10000",
        ),
        (
            json!(["x"]),
            "#: expected type: JSONObject, found: JSONArray",
        ),
    ];
    for (body, expected) in cases {
        let message = validation_message(invoke(&c, TITAN_EMBED, &body).await.unwrap_err());
        assert!(message.contains(expected), "{body}: {message}");
    }
    let err = c
        .invoke_model()
        .model_id(TITAN_EMBED)
        .body(Blob::new("not json"))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_validation_exception());
}

#[tokio::test]
async fn embedding_models_serve_invoke_model_only() {
    let emu = emulator().await;
    let c = client(&emu);
    let err = c
        .converse()
        .model_id(TITAN_EMBED)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        validation_message(err),
        "This action doesn't support the model that you provided. Try again with a supported text or chat model."
    );
    let err = c
        .converse_stream()
        .model_id(COHERE_EMBED)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(validation_message(err).starts_with("This action doesn't support the model"));
    let err = c
        .invoke_model_with_response_stream()
        .model_id(COHERE_EMBED_V4)
        .body(Blob::new(
            json!({"texts": ["x"], "input_type": "search_query"}).to_string(),
        ))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        validation_message(err),
        "The model is unsupported for streaming."
    );
    let err = c
        .count_tokens()
        .model_id(TITAN_EMBED)
        .input(CountTokensInput::Converse(
            ConverseTokensRequest::builder()
                .messages(user("hi"))
                .build(),
        ))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_validation_exception());
    // Nothing was embedded, yet each call counts as one to the model.
    assert_eq!(emu.state().calls(None, Some(TITAN_EMBED)), 2);
}

#[tokio::test]
async fn chat_models_refuse_embedding_bodies() {
    let emu = emulator().await;
    let c = client(&emu);
    let titan = json!({"inputText": "x", "dimensions": 256});
    let message = validation_message(invoke(&c, LLAMA, &titan).await.unwrap_err());
    assert!(
        message.contains("extraneous key [dimensions] is not permitted"),
        "{message}"
    );
    let cohere = json!({"texts": ["x"], "input_type": "search_query"});
    let message = validation_message(invoke(&c, LLAMA, &cohere).await.unwrap_err());
    assert!(message.contains("extraneous key ["), "{message}");
    let message = validation_message(invoke(&c, common::HAIKU, &cohere).await.unwrap_err());
    assert!(message.starts_with("Malformed input request"), "{message}");
}

#[tokio::test]
async fn faults_counters_and_recorded_requests_cover_embedding_models() {
    let emu = emulator().await;
    let (c, seen) = client_seeing_headers(&emu);
    set_faults(&emu, json!({"model": TITAN_EMBED, "throttle_next": 1})).await;
    let body = json!({"inputText": "throttled once"});
    let err = invoke(&c, TITAN_EMBED, &body)
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_throttling_exception(), "{err:?}");
    assert_eq!(err.code(), Some("ThrottlingException"));
    invoke(&c, TITAN_EMBED, &body).await.unwrap();

    set_faults(&emu, json!({"model": COHERE_EMBED_V4, "error_next": {"kind": "ServiceUnavailableException", "count": 1}, "slow_ms": 25})).await;
    let v4 = json!({"texts": ["a", "b"], "input_type": "search_query"});
    let err = invoke(&c, &format!("us.{COHERE_EMBED_V4}"), &v4)
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_service_unavailable_exception());
    invoke(&c, &format!("us.{COHERE_EMBED_V4}"), &v4)
        .await
        .unwrap();
    assert!(seen.number("x-amzn-bedrock-invocation-latency") >= 25);

    // Counted under the base model, errors included; bodies recorded as sent.
    let counters = emu.state().counters();
    let titan = counters[&("InvokeModel".to_owned(), TITAN_EMBED.to_owned())];
    assert_eq!((titan.calls, titan.errors), (2, 1));
    assert_eq!(
        emu.state()
            .calls(Some("InvokeModel"), Some(COHERE_EMBED_V4)),
        2
    );
    let recorded = emu.state().recorded(10);
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[0].body, body);
    assert_eq!(recorded[3].model_id, format!("us.{COHERE_EMBED_V4}"));
    assert_eq!(recorded[3].body, v4);
}
