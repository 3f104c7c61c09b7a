//! `quarry dev` as a user runs it: it starts everything, prints the contract lines, the
//! printed key answers, and stopping it leaves no process behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use quarry_testkit::{python, workspace_root};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn quarry_dev_serves_the_printed_curl_and_stops_cleanly() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["dev", "--port", "0", "--stage", "devtest"])
        .current_dir(workspace_root())
        .env("QUARRY_PYTHON", python())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut keys, mut moto, mut evaluate) = (None, Vec::new(), None, None);
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Quarry listening on ") {
                base = Some(url.to_owned());
            } else if let Some(rest) = line.strip_prefix("API key (tenant ") {
                let (tenant, key) = rest.split_once("): ").unwrap();
                keys.push((tenant.to_owned(), key.to_owned()));
            } else if let Some(url) = line.strip_prefix("AWS endpoint (moto): ") {
                moto = Some(url.to_owned());
            } else if let Some(rest) = line.strip_prefix("Evaluate: ") {
                evaluate = Some(rest.to_owned());
            } else if line.starts_with("Try: curl") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("quarry dev did not become ready");
    let base = base.expect("listening line");
    assert_eq!(
        keys.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["acme", "globex"]
    );

    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat"))
        .bearer_auth(&keys[0].1)
        .json(&serde_json::json!({"messages": [{"role": "user", "content": "Hello, Quarry!"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        !body["output"]["text"].as_str().unwrap().is_empty(),
        "{body}"
    );
    // A report right after the answer includes it: the local stack counts each record
    // before answering (in AWS the counters follow within seconds).
    let report = tokio::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args([
            "cost",
            "--aws-endpoint",
            moto.as_deref().unwrap(),
            "--stage",
            "devtest",
        ])
        .args(["report", "--tenant", "acme", "--json"])
        .env("QUARRY_PYTHON", python())
        .output()
        .await
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&report.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&report.stderr)));
    assert_eq!(rows[0]["requests"], 1, "{rows}");
    assert_eq!(rows[0]["cost_usd"], body["cost_usd"], "{rows}");

    // The README's first request names the `prod` label: the demo prompts carry it.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat"))
        .bearer_auth(&keys[0].1)
        .json(&serde_json::json!({"prompt": "summarize", "label": "prod", "variables": {"text": "Quarry is a gateway."}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prompt"]["label"], "prod", "{body}");
    // The RAG prompt works out of the box: the emulator serves the sample Knowledge Base
    // (Agent Runtime on the Bedrock endpoint) and scores grounding.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat"))
        .bearer_auth(&keys[0].1)
        .json(&serde_json::json!({"prompt": "docs-qa", "variables": {"question": "How much does Acme pay per sensor?"}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["retrieval"]["knowledge_base_id"], "QUARRYDOCS",
        "{body}"
    );
    assert!(!body["sources"].as_array().unwrap().is_empty(), "{body}");
    assert!(body["grounding"]["score"].is_number(), "{body}");
    // The printed evaluation calls this binary, and says the emulator's text is filler.
    let evaluate = evaluate.expect("an Evaluate line");
    assert!(
        evaluate.starts_with(env!("CARGO_BIN_EXE_quarry")) && evaluate.contains("filler"),
        "{evaluate}"
    );

    // SIGTERM, as Ctrl-C or a service manager would send.
    let pid = child.id().unwrap().to_string();
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("quarry dev did not stop")
        .unwrap();
    assert!(status.success(), "{status}");
    // Its servers are gone too.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "API still up"
    );
    assert!(
        client.get(moto.unwrap()).send().await.is_err(),
        "moto still up"
    );
}
