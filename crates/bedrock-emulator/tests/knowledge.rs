//! Knowledge Bases over the wire: Retrieve and RetrieveAndGenerate against a corpus
//! written to a temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

const KB: &str = "QUARRYKB01";

/// A corpus of four documents in a fresh folder: two per tenant, one HTML page.
fn corpus(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bedrock-emu-kb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("guides")).unwrap();
    let files = [
        (
            "pricing.md",
            "# Pricing\nQuarry costs twelve dollars per seat per month. Annual plans get two months free.",
            Some(json!({"tenant": "acme", "year": 2024, "tier": "gold"})),
        ),
        (
            "guides/backup.md",
            "# Backups\nQuarry snapshots every database nightly and keeps backups for thirty days.",
            Some(json!({"tenant": "globex", "year": 2023, "tier": "silver"})),
        ),
        (
            "security.txt",
            "Quarry encrypts data at rest with AES-256 and rotates encryption keys yearly.",
            Some(json!({"tenant": "acme", "year": 2022, "tier": "bronze"})),
        ),
        (
            "install.html",
            "<html><body><h1>Install</h1><p>Install the Quarry agent with the installer script on each host.</p></body></html>",
            None,
        ),
    ];
    for (path, text, meta) in files {
        std::fs::write(dir.join(path), text).unwrap();
        if let Some(meta) = meta {
            let sidecar = dir.join(format!("{path}.metadata.json"));
            std::fs::write(sidecar, json!({"metadataAttributes": meta}).to_string()).unwrap();
        }
    }
    dir
}

async fn emulator(name: &str, extra: &str) -> RunningEmulator {
    let dir = corpus(name);
    let yaml = format!(
        "knowledge_bases:\n  {KB}:\n    path: {}\n    chunking: {{strategy: headings, max_tokens: 200}}\n{extra}",
        dir.display()
    );
    let config = EmulatorConfig::from_yaml_over_builtin(&yaml).unwrap();
    bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap()
}

async fn post(emu: &RunningEmulator, path: &str, body: Value) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", emu.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, kind, r.json().await.unwrap())
}

async fn retrieve(emu: &RunningEmulator, body: Value) -> Value {
    let (status, _, body) = post(emu, &format!("/knowledgebases/{KB}/retrieve"), body).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn uris(body: &Value) -> Vec<String> {
    body["retrievalResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["location"]["s3Location"]["uri"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn search(config: Value) -> Value {
    json!({"retrievalQuery": {"text": "how long are database backups kept"},
           "retrievalConfiguration": {"vectorSearchConfiguration": config}})
}

#[tokio::test]
async fn retrieve_ranks_the_relevant_chunk_first() {
    let emu = emulator("rank", "").await;
    let body = retrieve(
        &emu,
        json!({"retrievalQuery": {"text": "how long are database backups kept"}}),
    )
    .await;
    let results = body["retrievalResults"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    let first = &results[0];
    assert_eq!(
        first["location"],
        json!({"type": "S3", "s3Location": {"uri": format!("s3://{KB}/guides/backup.md")}})
    );
    assert_eq!(first["content"]["type"], "TEXT");
    assert!(
        first["content"]["text"]
            .as_str()
            .unwrap()
            .contains("thirty days")
    );
    assert_eq!(first["metadata"]["tenant"], "globex");
    assert_eq!(
        first["metadata"]["x-amz-bedrock-kb-source-uri"],
        format!("s3://{KB}/guides/backup.md")
    );
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    // The HTML page is served as text.
    let install = results
        .iter()
        .find(|r| {
            r["location"]["s3Location"]["uri"]
                .as_str()
                .unwrap()
                .ends_with("install.html")
        })
        .unwrap();
    assert!(!install["content"]["text"].as_str().unwrap().contains('<'));
    assert_eq!(emu.state().calls(Some("Retrieve"), Some(KB)), 1);
}

#[tokio::test]
async fn number_of_results_limits_and_is_checked() {
    let emu = emulator("count", "").await;
    let body = retrieve(&emu, search(json!({"numberOfResults": 2}))).await;
    assert_eq!(uris(&body).len(), 2);
    for bad in [0, 101] {
        let (status, kind, body) = post(
            &emu,
            &format!("/knowledgebases/{KB}/retrieve"),
            search(json!({"numberOfResults": bad})),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(kind.as_deref(), Some("ValidationException"));
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("numberOfResults"),
            "{body}"
        );
    }
    let (status, _, body) = post(
        &emu,
        &format!("/knowledgebases/{KB}/retrieve"),
        json!({"retrievalQuery": {}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("retrievalQuery.text")
    );
}

#[tokio::test]
async fn hybrid_adds_keyword_overlap_to_the_semantic_score() {
    let emu = emulator("hybrid", "").await;
    let semantic = retrieve(&emu, search(json!({"overrideSearchType": "SEMANTIC"}))).await;
    let hybrid = retrieve(&emu, search(json!({"overrideSearchType": "HYBRID"}))).await;
    let score = |b: &Value, uri: &str| {
        b["retrievalResults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["location"]["s3Location"]["uri"] == uri)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let backup = format!("s3://{KB}/guides/backup.md");
    let install = format!("s3://{KB}/install.html");
    assert_eq!(uris(&hybrid)[0], backup);
    // The backup page shares query words, the install page none: HYBRID widens the gap.
    let gap_semantic = score(&semantic, &backup) - score(&semantic, &install);
    let gap_hybrid = score(&hybrid, &backup) - score(&hybrid, &install);
    assert!(gap_hybrid > gap_semantic, "{gap_hybrid} vs {gap_semantic}");
    let (status, _, _) = post(
        &emu,
        &format!("/knowledgebases/{KB}/retrieve"),
        search(json!({"overrideSearchType": "FUZZY"})),
    )
    .await;
    assert_eq!(status, 400);
}

async fn filtered(emu: &RunningEmulator, filter: Value) -> Vec<String> {
    let body = retrieve(
        emu,
        search(json!({"numberOfResults": 10, "filter": filter})),
    )
    .await;
    let mut names: Vec<String> = uris(&body)
        .into_iter()
        .map(|u| u.rsplit('/').next().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn each_filter_operator_selects_by_metadata() {
    let emu = emulator("filters", "").await;
    let cases = [
        (
            json!({"equals": {"key": "tenant", "value": "acme"}}),
            vec!["pricing.md", "security.txt"],
        ),
        (
            json!({"notEquals": {"key": "tenant", "value": "acme"}}),
            vec!["backup.md", "install.html"],
        ),
        (
            json!({"greaterThan": {"key": "year", "value": 2023}}),
            vec!["pricing.md"],
        ),
        (
            json!({"greaterThanOrEquals": {"key": "year", "value": 2023}}),
            vec!["backup.md", "pricing.md"],
        ),
        (
            json!({"lessThan": {"key": "year", "value": 2023}}),
            vec!["security.txt"],
        ),
        (
            json!({"lessThanOrEquals": {"key": "year", "value": 2023}}),
            vec!["backup.md", "security.txt"],
        ),
        (
            json!({"in": {"key": "tier", "value": ["gold", "bronze"]}}),
            vec!["pricing.md", "security.txt"],
        ),
        (
            json!({"notIn": {"key": "tier", "value": ["gold", "bronze"]}}),
            vec!["backup.md", "install.html"],
        ),
        (
            json!({"startsWith": {"key": "tier", "value": "si"}}),
            vec!["backup.md"],
        ),
        (
            json!({"stringContains": {"key": "tier", "value": "ron"}}),
            vec!["security.txt"],
        ),
        (
            json!({"andAll": [{"equals": {"key": "tenant", "value": "acme"}}, {"greaterThan": {"key": "year", "value": 2023}}]}),
            vec!["pricing.md"],
        ),
        (
            json!({"orAll": [{"equals": {"key": "tier", "value": "silver"}}, {"lessThan": {"key": "year", "value": 2023}}]}),
            vec!["backup.md", "security.txt"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(filtered(&emu, filter.clone()).await, expected, "{filter}");
    }
    let (status, kind, _) = post(
        &emu,
        &format!("/knowledgebases/{KB}/retrieve"),
        search(json!({"filter": {"andAll": [{"equals": {"key": "tenant", "value": "acme"}}]}})),
    )
    .await;
    assert_eq!(
        (status, kind.as_deref()),
        (400, Some("ValidationException"))
    );
}

#[tokio::test]
async fn a_tenant_filter_never_returns_the_other_tenants_documents() {
    let emu = emulator("tenant", "").await;
    // The query matches globex's backup page best, yet acme's filter must hide it.
    let body = retrieve(
        &emu,
        search(json!({"filter": {"equals": {"key": "tenant", "value": "acme"}}})),
    )
    .await;
    let results = body["retrievalResults"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|r| r["metadata"]["tenant"] == "acme"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_knowledge_base_is_not_found() {
    let emu = emulator("unknown", "").await;
    let (status, kind, body) = post(
        &emu,
        "/knowledgebases/NOSUCHKB00/retrieve",
        json!({"retrievalQuery": {"text": "x"}}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(kind.as_deref(), Some("ResourceNotFoundException"));
    assert!(body["message"].as_str().unwrap().contains("NOSUCHKB00"));
    // An ID breaking Bedrock's pattern is refused, and never reaches the file system.
    let (status, kind, body) = post(
        &emu,
        "/knowledgebases/..%2F..%2Fetc/retrieve",
        json!({"retrievalQuery": {"text": "x"}}),
    )
    .await;
    assert_eq!(
        (status, kind.as_deref()),
        (400, Some("ValidationException"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("knowledgeBaseId")
    );
    // A knowledge base ARN names its ID.
    let arn = format!("arn:aws:bedrock:us-east-1:123456789012:knowledge-base/{KB}");
    let (status, _, body) = post(
        &emu,
        &format!("/knowledgebases/{}/retrieve", arn.replace('/', "%2F")),
        json!({"retrievalQuery": {"text": "backups"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_throttling_fault_applies_to_a_knowledge_base() {
    let emu = emulator(
        "throttle",
        &format!("faults:\n  {KB}: {{throttle_next: 1}}\n"),
    )
    .await;
    let body = json!({"retrievalQuery": {"text": "backups"}});
    let (status, kind, _) = post(
        &emu,
        &format!("/knowledgebases/{KB}/retrieve"),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, kind.as_deref()),
        (429, Some("ThrottlingException"))
    );
    retrieve(&emu, body).await;
    let counted = emu.state().counters();
    let count = counted
        .get(&("Retrieve".to_owned(), KB.to_owned()))
        .unwrap();
    assert_eq!((count.calls, count.errors), (2, 1));
}

#[tokio::test]
async fn a_knowledge_bases_dir_serves_every_subfolder() {
    let dir = corpus("dir");
    let parent = dir.parent().unwrap().to_owned();
    let id = dir.file_name().unwrap().to_str().unwrap().to_owned();
    let mut config = EmulatorConfig::builtin();
    config.knowledge_bases_dir = Some(parent);
    let emu = bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap();
    let (status, _, body) = post(
        &emu,
        &format!("/knowledgebases/{id}/retrieve"),
        json!({"retrievalQuery": {"text": "encryption keys"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(uris(&body)[0].ends_with("/security.txt"));
}

#[tokio::test]
async fn retrieve_and_generate_cites_the_passages_it_quotes() {
    let emu = emulator("rag", "").await;
    let request = json!({
        "input": {"text": "how long are database backups kept"},
        "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {
                "knowledgeBaseId": KB,
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 2}}
            }
        },
        "sessionId": "session-1"
    });
    let (status, _, body) = post(&emu, "/retrieveAndGenerate", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionId"], "session-1");
    let text = body["output"]["text"].as_str().unwrap();
    let citations = body["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 2);
    for c in citations {
        let part = &c["generatedResponsePart"]["textResponsePart"];
        let start = part["span"]["start"].as_u64().unwrap() as usize;
        let end = part["span"]["end"].as_u64().unwrap() as usize;
        let quoted: String = text.chars().skip(start).take(end + 1 - start).collect();
        assert_eq!(quoted, part["text"].as_str().unwrap());
        let reference = &c["retrievedReferences"][0];
        assert!(
            reference["content"]["text"]
                .as_str()
                .unwrap()
                .contains(part["text"].as_str().unwrap().trim_start_matches("# "))
        );
        assert_eq!(reference["location"]["type"], "S3");
        assert!(reference["metadata"].is_object());
    }
    assert!(
        citations[0]["retrievedReferences"][0]["location"]["s3Location"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("backup.md")
    );
    assert_eq!(emu.state().calls(Some("RetrieveAndGenerate"), Some(KB)), 1);

    let mut bad_session = request.clone();
    bad_session["sessionId"] = json!("no spaces allowed");
    let (status, _, body) = post(&emu, "/retrieveAndGenerate", bad_session).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("sessionId"));
    let mut long_input = request.clone();
    long_input["input"]["text"] = json!("x".repeat(1001));
    let (status, _, _) = post(&emu, "/retrieveAndGenerate", long_input).await;
    assert_eq!(status, 400);

    let mut unknown_model = request.clone();
    unknown_model["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"]["modelArn"] =
        json!("no.such-model");
    let (status, kind, _) = post(&emu, "/retrieveAndGenerate", unknown_model).await;
    assert_eq!(
        (status, kind.as_deref()),
        (400, Some("ValidationException"))
    );
    let mut unknown_kb = request;
    unknown_kb["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"]["knowledgeBaseId"] =
        json!("NOSUCHKB00");
    let (status, kind, _) = post(&emu, "/retrieveAndGenerate", unknown_kb).await;
    assert_eq!(
        (status, kind.as_deref()),
        (404, Some("ResourceNotFoundException"))
    );
}

#[tokio::test]
async fn the_sample_corpus_keeps_tenants_apart() {
    let mut config = EmulatorConfig::builtin();
    config.knowledge_bases_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/knowledge-bases"));
    let emu = bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .unwrap();
    let path = "/knowledgebases/QUARRYDOCS/retrieve";
    let query = |filter: Value| {
        json!({"retrievalQuery": {"text": "how long are deleted series restorable from snapshots"},
               "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 10, "filter": filter}}})
    };
    let (_, _, globex) = post(
        &emu,
        path,
        query(json!({"equals": {"key": "tenant", "value": "globex"}})),
    )
    .await;
    assert!(uris(&globex)[0].ends_with("/retention.md"), "{globex}");
    let (_, _, acme) = post(
        &emu,
        path,
        query(json!({"equals": {"key": "tenant", "value": "acme"}})),
    )
    .await;
    let acme = uris(&acme);
    assert!(!acme.is_empty());
    assert!(
        acme.iter()
            .all(|u| u.ends_with("/pricing.md") || u.ends_with("/security.md")),
        "{acme:?}"
    );
}
