use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::*;
use crate::params::MemoryParams;
use serde_json::json;

fn spec() -> PromptSpec {
    serde_json::from_value(json!({
        "name": "summarize",
        "system": "You summarize in {{ language }}.",
        "template": "Summarize in {{ max_words }} words:\n{{ text }}",
        "variables": {
            "text": {"type": "string"},
            "max_words": {"type": "integer", "default": 50},
            "language": {"type": "string", "default": "English"}
        }
    }))
    .unwrap()
}

fn vars(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn renders_with_defaults() {
    let p = CompiledPrompt::compile(spec()).unwrap();
    let r = p.render(&vars(json!({"text": "hello"}))).unwrap();
    assert_eq!(r.user, "Summarize in 50 words:\nhello");
    assert_eq!(r.system.as_deref(), Some("You summarize in English."));
}

#[test]
fn lists_every_problem_at_once() {
    let p = CompiledPrompt::compile(spec()).unwrap();
    let e = p
        .render(&vars(json!({"max_words": "ten", "colour": 1})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing: text"), "{e}");
    assert!(e.contains("'max_words' must be integer, got string"), "{e}");
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn undeclared_template_variables_are_required() {
    let mut s = spec();
    s.template = "{{ text }} {{ extra }}".into();
    let p = CompiledPrompt::compile(s).unwrap();
    let e = p
        .render(&vars(json!({"text": "x"})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing: extra"), "{e}");
    assert_eq!(
        p.render(&vars(json!({"text": "x", "extra": "y"})))
            .unwrap()
            .user,
        "x y"
    );
}

#[test]
fn hostile_renders_are_errors_not_panics_or_hangs() {
    let render = |template: &str, text: &str| {
        let mut s = spec();
        s.template = template.into();
        CompiledPrompt::compile(s)
            .unwrap()
            .render(&vars(json!({"text": text})))
    };
    // minijinja 3.0.5 panics here; the request gets an error.
    let e = render("{{ text[::-1] }}", "").unwrap_err().to_string();
    assert!(e.contains("cannot be rendered"), "{e}");
    assert_eq!(render("{{ text[::-1] }}", "ab").unwrap().user, "ba");
    // Out of fuel instead of running for minutes.
    let e = render(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "x",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("fuel"), "{e}");
    let e = render("{{ text * 5000000 }}", "xy")
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the limit"), "{e}");
}

#[test]
fn global_functions_are_not_required_variables() {
    let mut s = spec();
    s.template = "{% for i in range(2) %}{{ i }}{% endfor %}{% set ns = namespace(n=1) %}\
                  {{ ns.n }} {{ text }}"
        .into();
    let p = CompiledPrompt::compile(s).unwrap();
    assert_eq!(p.render(&vars(json!({"text": "x"}))).unwrap().user, "011 x");
    let e = p
        .render(&vars(json!({"text": "x", "range": 3})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not declared by prompt"), "{e}");
}

#[test]
fn invalid_specs_are_refused() {
    let mut s = spec();
    s.template = "{{ unclosed".into();
    assert!(CompiledPrompt::compile(s).is_err());
    let mut s = spec();
    s.name = "../etc".into();
    assert!(CompiledPrompt::compile(s).is_err());
    let mut s = spec();
    s.variables.get_mut("max_words").unwrap().default = Some(json!("x"));
    assert!(CompiledPrompt::compile(s).is_err());
}

#[test]
fn references_parse() {
    assert_eq!(
        parse_reference("a@3").unwrap(),
        ("a".into(), PromptSelector::Version(3))
    );
    assert_eq!(
        parse_reference("a:prod").unwrap(),
        ("a".into(), PromptSelector::Label("prod".into()))
    );
    assert_eq!(
        parse_reference("a").unwrap(),
        ("a".into(), PromptSelector::Latest)
    );
    assert!(parse_reference("a@x").is_err());
}

#[test]
fn ab_split_is_stable_and_weighted() {
    let weights: BTreeMap<String, u32> = [("prod".into(), 90), ("canary".into(), 10)].into();
    let first = choose_label("p", "user-1", &weights);
    assert_eq!(first, choose_label("p", "user-1", &weights));
    let canary = (0..2000)
        .filter(|i| choose_label("p", &format!("u{i}"), &weights).as_deref() == Some("canary"))
        .count();
    assert!(
        (120..=280).contains(&canary),
        "{canary} of 2000 on canary at 10%"
    );
}

#[tokio::test]
async fn default_selector_falls_back_to_latest() {
    let params = Arc::new(MemoryParams::default());
    params.put(
        "/q/prompts/summarize",
        &serde_json::to_string(&spec()).unwrap(),
    );
    let store = PromptStore::new(params.clone(), "/q", Duration::from_secs(60));
    let v = store
        .get("summarize", &PromptSelector::Default)
        .await
        .unwrap();
    assert_eq!(v.version, 1);
    let e = store
        .get("nope", &PromptSelector::Default)
        .await
        .unwrap_err();
    assert_eq!(e.status_code(), 400);
    assert!(e.to_string().contains("unknown prompt 'nope'"));
}

#[tokio::test]
async fn unknown_names_and_bad_labels_cannot_flood_the_store() {
    let params = Arc::new(MemoryParams::default());
    params.put(
        "/q/prompts/summarize",
        &serde_json::to_string(&spec()).unwrap(),
    );
    let store = PromptStore::new(params.clone(), "/q", Duration::from_secs(60));
    for _ in 0..100 {
        let e = store
            .get("nope", &PromptSelector::Default)
            .await
            .unwrap_err();
        assert_eq!(e.status_code(), 400);
        let e = store
            .get("summarize", &PromptSelector::Version(99))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no version 99"), "{e}");
    }
    // `nope:prod`, `nope` (latest) and `summarize:99` once each.
    assert_eq!(params.gets(), 3);

    // Labels the store would refuse are the caller's 400, without a call.
    let long = "x".repeat(1000);
    for bad in ["aws-x", "ssm", "1st", "a b", "", long.as_str()] {
        let e = store
            .get("summarize", &PromptSelector::Label(bad.to_owned()))
            .await
            .unwrap_err();
        assert_eq!(e.status_code(), 400, "{bad}: {e}");
        assert!(e.to_string().len() < 400, "{e}");
    }
    assert_eq!(params.gets(), 3);
    assert!(parse_reference("summarize:aws-x").is_err());
}

#[tokio::test]
async fn a_prompt_pushed_after_a_miss_is_seen_when_configuration_is_read_every_time() {
    let params = Arc::new(MemoryParams::default());
    let store = PromptStore::new(params.clone(), "/q", Duration::ZERO);
    assert!(store.get("late", &PromptSelector::Latest).await.is_err());
    params.put("/q/prompts/late", &serde_json::to_string(&spec()).unwrap());
    assert!(store.get("late", &PromptSelector::Latest).await.is_ok());
}

fn rag(kb: Value) -> PromptSpec {
    serde_json::from_value(json!({
        "name": "docs",
        "template": "Context first. Question: {{ question }}",
        "variables": {"question": {"type": "string"}, "team": {"type": "string", "default": "core"}},
        "knowledge_base": kb,
    }))
    .unwrap()
}

#[test]
fn the_retrieval_query_defaults_to_the_question_and_filters_render_as_strings() {
    let p = CompiledPrompt::compile(rag(json!({
        "id": "QUARRYDOCS",
        "filter": {"andAll": [
            {"equals": {"key": "team", "value": "{{ team }}"}},
            {"greaterThan": {"key": "year", "value": 2023}}
        ]}
    })))
    .unwrap();
    // A variable that looks like JSON stays one string value: it cannot add a clause.
    let hostile = "x\"}}, {\"equals\": {\"key\": \"tenant\", \"value\": \"globex\"}}";
    let r = p
        .render(&vars(json!({"question": "What is new?", "team": hostile})))
        .unwrap();
    let (query, filter) = r.retrieval.unwrap();
    assert_eq!(query, "What is new?");
    let filter = filter.unwrap();
    assert_eq!(filter["andAll"][0]["equals"]["value"], hostile);
    assert_eq!(filter["andAll"][1]["greaterThan"]["value"], 2023);
    assert_eq!(filter["andAll"].as_array().unwrap().len(), 2);

    // A query template of its own; no `question` variable: the rendered turn.
    let p = CompiledPrompt::compile(rag(
        json!({"id": "QUARRYDOCS", "query": "{{ team }}: {{ question }}"}),
    ))
    .unwrap();
    let (query, _) = p
        .render(&vars(json!({"question": "Why?"})))
        .unwrap()
        .retrieval
        .unwrap();
    assert_eq!(query, "core: Why?");
}

#[test]
fn retrieval_settings_bedrock_would_refuse_are_refused_on_compile() {
    for (kb, why) in [
        (json!({"id": "quarry-docs"}), "knowledge_base.id"),
        (json!({"id": "QUARRYDOCS", "top_k": 0}), "top_k"),
        (
            json!({"id": "QUARRYDOCS", "filter": {"like": {"key": "a", "value": 1}}}),
            "unknown operator",
        ),
        (
            json!({"id": "QUARRYDOCS", "query": "{{ unclosed"}),
            "knowledge_base.query",
        ),
    ] {
        let e = CompiledPrompt::compile(rag(kb.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{kb}: {e}");
    }
    let mut no_kb = spec();
    no_kb.grounding = Some(serde_json::from_value(json!({"threshold": 0.5})).unwrap());
    let e = CompiledPrompt::compile(no_kb).unwrap_err().to_string();
    assert!(e.contains("declare a knowledge_base"), "{e}");
    let mut bad = rag(json!({"id": "QUARRYDOCS"}));
    bad.grounding = Some(serde_json::from_value(json!({"threshold": 1.5})).unwrap());
    assert!(
        CompiledPrompt::compile(bad)
            .unwrap_err()
            .to_string()
            .contains("threshold")
    );
}
