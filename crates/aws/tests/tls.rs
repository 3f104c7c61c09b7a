//! The SDK clients verify TLS with the compiled-in roots: a server whose certificate no
//! Mozilla root vouches for is refused during the handshake, before any request is sent.
//!
//! The server presents testkit's self-signed certificate for `localhost`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::config::Credentials;
use tokio::io::AsyncWriteExt;

/// A TLS server on loopback presenting a self-signed certificate for `localhost`; counts the
/// handshakes that completed (and answers those with an empty 200).
async fn self_signed_server() -> (u16, Arc<AtomicUsize>) {
    let acceptor = quarry_testkit::tls::localhost_acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let completed = Arc::new(AtomicUsize::new(0));
    let count = completed.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                        .await;
                }
            });
        }
    });
    (port, completed)
}

#[tokio::test]
async fn a_certificate_no_trusted_root_vouches_for_is_refused() {
    let (port, completed) = self_signed_server().await;
    let sdk = quarry_aws::sdk::load_with(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "testing", "testing", None, None, "tls-test",
            ))
            .endpoint_url(format!("https://localhost:{port}"))
            .retry_config(RetryConfig::disabled()),
    )
    .await;
    let error = aws_sdk_ssm::Client::new(&sdk)
        .get_parameter()
        .name("/quarry/tls/probe")
        .send()
        .await
        .expect_err("an untrusted certificate must not be accepted");
    let described = quarry_aws::sdk::describe(&error);
    assert!(
        described.contains("UnknownIssuer"),
        "refused for its issuer, by certificate verification: {described}"
    );
    assert_eq!(
        completed.load(Ordering::SeqCst),
        0,
        "no handshake completed"
    );
}
