//! The body converters, each against Bedrock's rules.

use super::llama::llama_prompt_text;
use super::*;
use serde_json::json;

#[test]
fn anthropic_requires_version_and_max_tokens() {
    let e = anthropic_to_converse(&json!({"messages": []})).unwrap_err();
    assert!(e.message.contains("anthropic_version"));
    let e =
        anthropic_to_converse(&json!({"anthropic_version": "bedrock-2023-05-31", "messages": []}))
            .unwrap_err();
    assert!(e.message.contains("max_tokens"));
}

#[test]
fn anthropic_maps_system_tools_and_cache_control() {
    let c = anthropic_to_converse(&json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "t"}
    }))
    .unwrap();
    assert_eq!(c["system"][1]["cachePoint"]["type"], "default");
    assert_eq!(c["toolConfig"]["toolChoice"]["tool"]["name"], "t");
    assert_eq!(c["messages"][0]["content"][0]["text"], "hi");
}

#[test]
fn anthropic_maps_media_thinking_and_model_fields() {
    let c = anthropic_to_converse(&json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
            {"type": "document", "title": "notes.txt", "citations": {"enabled": true},
             "source": {"type": "text", "media_type": "text/plain", "data": "Hello."}},
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ]}]
    }))
    .unwrap();
    let content = &c["messages"][0]["content"];
    assert_eq!(content[0]["image"]["format"], "png");
    assert_eq!(content[1]["document"]["name"], "notes txt");
    assert_eq!(content[1]["document"]["source"]["text"], "Hello.");
    assert_eq!(content[3]["cachePoint"]["ttl"], "1h");
    assert_eq!(
        c["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        1024
    );
}

#[test]
fn nova_maps_messages_v1_onto_converse() {
    let c = nova_to_converse(&json!({
        "schemaVersion": "messages-v1",
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "messages": [{"role": "user", "content": [
            {"text": "hi"},
            {"image": {"format": "png", "source": {"bytes": "iVBORw=="}}}
        ]}],
        "inferenceConfig": {"max_new_tokens": 50, "top_p": 0.9, "top_k": 20,
                            "temperature": 0.2, "stopSequences": ["END"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {}}}}],
                       "toolChoice": {"auto": {}}}
    }))
    .unwrap();
    assert_eq!(c["system"][1]["cachePoint"]["type"], "default");
    assert_eq!(c["messages"][0]["content"][1]["image"]["format"], "png");
    assert_eq!(
        c["inferenceConfig"],
        json!({"maxTokens": 50, "topP": 0.9, "temperature": 0.2, "stopSequences": ["END"]})
    );
    assert_eq!(
        c["additionalModelRequestFields"]["inferenceConfig"]["topK"],
        20
    );
    assert_eq!(c["toolConfig"]["tools"][0]["toolSpec"]["name"], "t");
    assert!(c.get("schemaVersion").is_none());

    let camel = nova_to_converse(&json!({
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "inferenceConfig": {"maxTokens": 7, "topP": 0.5}
    }))
    .unwrap();
    assert_eq!(
        camel["inferenceConfig"],
        json!({"maxTokens": 7, "topP": 0.5})
    );
}

#[test]
fn nova_refuses_what_messages_v1_does_not_have() {
    let e = nova_to_converse(&json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]
    }))
    .unwrap_err();
    assert_eq!(
        e.message,
        "Malformed input request: #: extraneous key [anthropic_version] is not permitted\
         #: extraneous key [max_tokens] is not permitted\
         #/messages/0/content: expected type: JSONArray, found: String, \
         please reformat your input and try again."
    );
    let e = nova_to_converse(&json!({"prompt": "hi"})).unwrap_err();
    assert!(
        e.message.contains("#: required key [messages] not found"),
        "{}",
        e.message
    );
    let e = nova_to_converse(&json!({
        "schemaVersion": "messages-v2",
        "messages": [{"role": "system", "content": [{"document": {}}, {}]}],
        "inferenceConfig": {"max_tokens": 5, "temperature": "hot"}
    }))
    .unwrap_err();
    for part in [
        "#/schemaVersion: messages-v2 is not a valid enum value",
        "#/messages/0/role: system is not a valid enum value",
        "#/messages/0/content/0: extraneous key [document] is not permitted",
        "#/messages/0/content/1: expected exactly one of",
        "#/inferenceConfig: extraneous key [max_tokens] is not permitted",
        "#/inferenceConfig/temperature: expected type: Number, found: String",
    ] {
        assert!(e.message.contains(part), "{part} not in {}", e.message);
    }
}

#[test]
fn llama_takes_its_own_fields_only() {
    let c = llama3_to_converse(&json!({
        "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nRepeat: hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        "max_gen_len": 64, "temperature": 0.1, "top_p": 0.9
    }))
    .unwrap();
    let text = c["messages"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.lines().any(|l| l == "Repeat: hello"), "{text:?}");
    assert!(!text.contains("<|"), "{text:?}");
    assert_eq!(
        c["inferenceConfig"],
        json!({"maxTokens": 64, "temperature": 0.1, "topP": 0.9})
    );
    let e =
        llama3_to_converse(&json!({"prompt": "x", "max_tokens": 5, "stop": ["a"]})).unwrap_err();
    assert!(
        e.message
            .contains("#: extraneous key [max_tokens] is not permitted")
    );
    assert!(
        e.message
            .contains("#: extraneous key [stop] is not permitted")
    );
    let e = llama3_to_converse(&json!({"max_gen_len": "many"})).unwrap_err();
    assert!(e.message.contains("#: required key [prompt] not found"));
    assert!(
        e.message
            .contains("#/max_gen_len: expected type: Integer, found: String")
    );
    // Text that only looks like a marker is left alone.
    assert_eq!(
        llama_prompt_text("a <|not a token|> b"),
        "a <|not a token|> b"
    );
}

#[test]
fn generic_rejects_unknown_keys() {
    let e = generic_to_converse(&json!({"prompt": "x", "bogus": 1})).unwrap_err();
    assert!(e.message.contains("bogus"));
}
