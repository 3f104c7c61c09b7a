//! OpenAI `image_url` links, fetched where the deployment allows it: an https server on
//! loopback (a certificate for `localhost` the deployment's CA setting trusts) serves images,
//! a large file, a slow answer and a redirect; the chat API fetches what the policy allows,
//! within its limits, and names the part it refuses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{call, options, state};
use quarry_aws::image_fetch::ImageFetchPolicy;
use quarry_testkit::Stack;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CERT: &[u8] = quarry_testkit::tls::LOCALHOST_CERT;
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52,
];

/// What the server answers for a path.
fn answer(path: &str) -> Option<Vec<u8>> {
    let ok = |body: &[u8], kind: &str| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    Some(match path {
        "/cat.png" => ok(PNG, "image/png"),
        "/notes.txt" => ok(b"just text", "text/plain"),
        "/huge.png" => {
            let mut body = PNG.to_vec();
            body.resize(4_000_000, 0);
            ok(&body, "image/png")
        }
        "/moved.png" => {
            b"HTTP/1.1 302 Found\r\nlocation: https://localhost/cat.png\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
        }
        // Never answers: the fetch's time limit ends it.
        "/slow.png" => return None,
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
    })
}

async fn image_server() -> u16 {
    let acceptor = quarry_testkit::tls::localhost_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                match answer(&path) {
                    Some(bytes) => {
                        let _ = tls.write_all(&bytes).await;
                        let _ = tls.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    port
}

fn with_images(policy: ImageFetchPolicy) -> chat_handler::Options {
    chat_handler::Options {
        image_fetch: policy,
        ..options()
    }
}

fn policy() -> ImageFetchPolicy {
    ImageFetchPolicy {
        hosts: vec!["localhost".into()],
        timeout: Duration::from_millis(1500),
        // The test server is on loopback; a deployment serving images inside its VPC says so
        // the same way.
        private_addresses: true,
        ca_pem: Some(CERT.to_vec()),
    }
}

async fn ask(s: &Arc<chat_handler::AppState>, key: &str, url: &str) -> (u16, Value) {
    let r = call(
        s,
        "POST",
        "/v1/chat/completions",
        Some(key),
        Some(
            json!({"model": "smart", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": url}}]}]}),
        ),
    )
    .await;
    (r.status, r.body)
}

#[tokio::test]
async fn linked_images_are_fetched_within_the_deployments_limits() {
    let stack = Stack::start().await;
    let port = image_server().await;
    let key = stack.key("acme");
    let url = |path: &str| format!("https://localhost:{port}{path}");

    // Off by default: a clear 400 naming the part, no model call.
    let s = state(&stack, options());
    let (status, body) = ask(&s, key, &url("/cat.png")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages[0].content[1]");
    assert!(body.to_string().contains("data URL"), "{body}");
    assert_eq!(stack.model_calls(), 0);

    // Allowed: fetched, and the model gets the image itself.
    let s = state(&stack, with_images(policy()));
    let (status, body) = ask(&s, key, &url("/cat.png")).await;
    assert_eq!(status, 200, "{body}");
    let sent = &stack.emulator.state().recorded(1)[0].body;
    let image = &sent["messages"][0]["content"][1]["image"];
    assert_eq!(image["format"], "png", "{sent}");
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(image["source"]["bytes"].as_str().unwrap())
            .unwrap(),
        PNG
    );

    // Everything else is a 400 naming the part, and no model call.
    let calls = stack.model_calls();
    for (link, says) in [
        (url("/huge.png"), "3.75 MB"),
        (url("/notes.txt"), "not a png"),
        (url("/moved.png"), "HTTP 302"),
        (url("/slow.png"), "timed out"),
        (url("/missing.png"), "HTTP 404"),
        ("https://example.com/cat.png".to_owned(), "not one of them"),
        ("https://127.0.0.1/cat.png".to_owned(), "IP addresses"),
    ] {
        let (status, body) = ask(&s, key, &link).await;
        assert_eq!(status, 400, "{link}: {body}");
        assert_eq!(body["error"]["param"], "messages[0].content[1]", "{link}");
        assert!(body.to_string().contains(says), "{link}: {body}");
    }
    assert_eq!(stack.model_calls(), calls);

    // Loopback is private: refused unless the deployment allows private addresses.
    let s = state(
        &stack,
        with_images(ImageFetchPolicy {
            private_addresses: false,
            ..policy()
        }),
    );
    let (status, body) = ask(&s, key, &url("/cat.png")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("private address"), "{body}");

    // Without the deployment's CA, the self-signed server is not trusted.
    let s = state(
        &stack,
        with_images(ImageFetchPolicy {
            ca_pem: None,
            ..policy()
        }),
    );
    let (status, body) = ask(&s, key, &url("/cat.png")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("cannot fetch"), "{body}");
}
