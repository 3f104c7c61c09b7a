//! Cohere Embed v3 and v4 through the unmodified aws-sdk-bedrockruntime client: batches,
//! input types, embedding types, truncation, v4's output dimensions, and Bedrock's
//! validation errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

mod common;

use common::embeddings::{floats, ints, invoke, norm, tokens};
use common::{
    COHERE_EMBED, COHERE_EMBED_MULTI, COHERE_EMBED_V4, client, client_seeing_headers, emulator,
    emulator_with, validation_message,
};

#[tokio::test]
async fn cohere_v3_embeds_a_batch_as_floats_with_the_summed_token_count() {
    let emu = emulator().await;
    let (c, seen) = client_seeing_headers(&emu);
    let texts: Vec<String> = (0..96)
        .map(|i| format!("document number {i} about {}", "x".repeat(i)))
        .collect();
    let out = invoke(
        &c,
        COHERE_EMBED,
        &json!({"texts": texts, "input_type": "search_document"}),
    )
    .await
    .unwrap();
    assert_eq!(out["response_type"], "embeddings_floats");
    assert_eq!(out["texts"], json!(texts));
    assert!(!out["id"].as_str().unwrap().is_empty());
    let embeddings = out["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 96);
    for e in embeddings {
        let v = floats(e);
        assert_eq!(v.len(), 1024);
        assert!((norm(&v) - 1.0).abs() < 1e-4);
    }
    let expected: u64 = texts.iter().map(|t| tokens(t)).sum();
    assert_eq!(seen.number("x-amzn-bedrock-input-token-count"), expected);
    assert_eq!(seen.number("x-amzn-bedrock-output-token-count"), 0);
    // Every input type is served; the multilingual model is another space.
    for input_type in ["search_query", "classification", "clustering"] {
        let body = json!({"texts": ["hello"], "input_type": input_type});
        invoke(&c, COHERE_EMBED, &body).await.unwrap();
    }
    let body = json!({"texts": ["hello"], "input_type": "clustering"});
    let english = invoke(&c, COHERE_EMBED, &body).await.unwrap();
    let multi = invoke(&c, COHERE_EMBED_MULTI, &body).await.unwrap();
    assert_ne!(english["embeddings"], multi["embeddings"]);
}

#[tokio::test]
async fn cohere_embedding_types_come_back_by_type() {
    let emu = emulator().await;
    let c = client(&emu);
    let body = json!({
        "texts": ["first text", "second text"],
        "input_type": "search_document",
        "embedding_types": ["float", "int8", "uint8", "binary", "ubinary"],
    });
    let out = invoke(&c, COHERE_EMBED, &body).await.unwrap();
    assert_eq!(out["response_type"], "embeddings_by_type");
    let e = &out["embeddings"];
    for (kind, len, lo, hi) in [
        ("int8", 1024, -128, 127),
        ("uint8", 1024, 0, 255),
        ("binary", 128, -128, 127),
        ("ubinary", 128, 0, 255),
    ] {
        assert_eq!(e[kind].as_array().unwrap().len(), 2, "{kind}");
        let v = ints(&e[kind][1]);
        assert_eq!(v.len(), len, "{kind}");
        assert!(v.iter().all(|x| (lo..=hi).contains(x)), "{kind}");
    }
    assert_eq!(floats(&e["float"][0]).len(), 1024);
    // The packed bits are the float vector's signs.
    let float = floats(&e["float"][0]);
    let ubinary = ints(&e["ubinary"][0]);
    for (i, byte) in ubinary.iter().enumerate() {
        for bit in 0..8 {
            let set = byte & (1 << (7 - bit)) != 0;
            assert_eq!(set, float[i * 8 + bit] > 0.0);
        }
    }
}

#[tokio::test]
async fn cohere_truncate_cuts_long_texts_or_refuses_them() {
    let emu = emulator().await;
    let c = client(&emu);
    // The 2,048-character limit is the schema's: truncate does not lift it.
    let long =
        json!({"texts": ["x".repeat(2049)], "input_type": "search_query", "truncate": "END"});
    let message = validation_message(invoke(&c, COHERE_EMBED, &long).await.unwrap_err());
    assert!(
        message.contains("#/texts/0: expected maxLength: 2048, actual: 2049"),
        "{message}"
    );

    // The token limit is the model's: a model of 8 tokens a text shows truncate at work.
    let small = emulator_with("models:\n  cohere.embed-english-v3:\n    provider: cohere\n    kind: embedding\n    embedding_body: cohere_v3\n    streaming: false\n    dimensions: [1024]\n    default_dimension: 1024\n    max_texts: 96\n    max_input_tokens: 8\n    max_input_chars: 2048\n").await;
    let (c, seen) = client_seeing_headers(&small);
    let text = "the start of a long text that runs on and on to its end";
    for truncate in [None, Some("NONE")] {
        let mut body = json!({"texts": [text], "input_type": "search_document"});
        if let Some(t) = truncate {
            body["truncate"] = json!(t);
        }
        let message = validation_message(invoke(&c, COHERE_EMBED, &body).await.unwrap_err());
        assert_eq!(message, "Input is too long for requested model.");
    }
    let cut = |t: &str| json!({"texts": [text], "input_type": "search_document", "truncate": t});
    let start = invoke(&c, COHERE_EMBED, &cut("START")).await.unwrap();
    assert_eq!(seen.number("x-amzn-bedrock-input-token-count"), 8);
    let end = invoke(&c, COHERE_EMBED, &cut("END")).await.unwrap();
    assert_eq!(start["texts"][0], text);
    assert_ne!(start["embeddings"], end["embeddings"]);
    // END keeps the first 32 characters: the same vector as sending them alone.
    let head: String = text.chars().take(32).collect();
    let alone = invoke(
        &c,
        COHERE_EMBED,
        &json!({"texts": [head], "input_type": "search_document"}),
    )
    .await
    .unwrap();
    assert_eq!(end["embeddings"], alone["embeddings"]);
}

#[tokio::test]
async fn cohere_v4_output_dimension_max_tokens_and_truncate() {
    let emu = emulator().await;
    let c = client(&emu);
    let out = invoke(
        &c,
        COHERE_EMBED_V4,
        &json!({"texts": ["hello"], "input_type": "search_query"}),
    )
    .await
    .unwrap();
    assert_eq!(out["response_type"], "embeddings_by_type");
    assert_eq!(floats(&out["embeddings"]["float"][0]).len(), 1536);
    for d in [256, 512, 1024, 1536] {
        let body = json!({"texts": ["hello", "world"], "input_type": "search_query", "output_dimension": d, "embedding_types": ["float", "int8"]});
        let out = invoke(&c, COHERE_EMBED_V4, &body).await.unwrap();
        assert_eq!(floats(&out["embeddings"]["float"][1]).len(), d);
        assert_eq!(ints(&out["embeddings"]["int8"][1]).len(), d);
    }
    let text = "one two three four five six seven eight nine ten";
    let body = |t: &str| json!({"texts": [text], "input_type": "clustering", "max_tokens": 2, "truncate": t});
    let message = validation_message(
        invoke(&c, COHERE_EMBED_V4, &body("NONE"))
            .await
            .unwrap_err(),
    );
    assert_eq!(message, "Input is too long for requested model.");
    let left = invoke(&c, COHERE_EMBED_V4, &body("LEFT")).await.unwrap();
    let right = invoke(&c, COHERE_EMBED_V4, &body("RIGHT")).await.unwrap();
    assert_ne!(left["embeddings"], right["embeddings"]);
    for (body, expected) in [
        (
            json!({"texts": ["x"], "input_type": "search_query", "output_dimension": 768}),
            "#/output_dimension: 768 is not a valid enum value",
        ),
        (
            json!({"texts": ["x"], "input_type": "search_query", "max_tokens": 0}),
            "#/max_tokens: 0 is not greater or equal to 1",
        ),
        (
            json!({"texts": ["x"], "input_type": "image"}),
            "#/input_type: image is not a valid enum value",
        ),
        (
            json!({"inputs": [{"content": [{"type": "text", "text": "x"}]}], "input_type": "search_query"}),
            "texts only",
        ),
    ] {
        let message = validation_message(invoke(&c, COHERE_EMBED_V4, &body).await.unwrap_err());
        assert!(message.contains(expected), "{body}: {message}");
    }
}

#[tokio::test]
async fn cohere_validation_errors_are_typed() {
    let emu = emulator().await;
    let c = client(&emu);
    let many: Vec<String> = (0..97).map(|i| i.to_string()).collect();
    let cases = [
        (
            json!({"inputText": "x"}),
            "Malformed input request: #: required key [texts] not found#: required key [input_type] not found#: extraneous key [inputText] is not permitted, please reformat your input and try again.",
        ),
        (
            json!({"texts": many, "input_type": "search_query"}),
            "#/texts: expected maximum item count: 96, found: 97",
        ),
        (
            json!({"texts": [], "input_type": "search_query"}),
            "#/texts: expected minimum item count: 1, found: 0",
        ),
        (
            json!({"texts": [1], "input_type": "search_query"}),
            "#/texts/0: expected type: String, found: Integer",
        ),
        (
            json!({"texts": ["x"]}),
            "#: required key [input_type] not found",
        ),
        (
            json!({"texts": ["x"], "input_type": "search"}),
            "#/input_type: search is not a valid enum value",
        ),
        (
            json!({"texts": ["x"], "input_type": "search_query", "truncate": "LEFT"}),
            "#/truncate: LEFT is not a valid enum value",
        ),
        (
            json!({"texts": ["x"], "input_type": "search_query", "embedding_types": ["bits"]}),
            "#/embedding_types/0: bits is not a valid enum value",
        ),
        (
            json!({"texts": ["x"], "input_type": "search_query", "output_dimension": 256}),
            "#: extraneous key [output_dimension] is not permitted",
        ),
        (
            json!({"images": ["data:image/png;base64,iVBORw0KGgo="], "input_type": "image"}),
            "texts only",
        ),
    ];
    for (body, expected) in cases {
        let message = validation_message(invoke(&c, COHERE_EMBED, &body).await.unwrap_err());
        assert!(message.contains(expected), "{body}: {message}");
    }
}
