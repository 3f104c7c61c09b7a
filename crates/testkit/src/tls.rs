//! A TLS server identity for `localhost`, for tests of what Quarry trusts.
//!
//! `fixtures/self-signed.{crt,key}`: a certificate for `localhost` (and 127.0.0.1) and its key,
//! made for tests only (`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
//! -nodes -days 36500 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1`).

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate (PEM): no public root vouches for it; a client that trusts it accepts it.
pub const LOCALHOST_CERT: &[u8] = include_bytes!("../fixtures/self-signed.crt");
const LOCALHOST_KEY: &[u8] = include_bytes!("../fixtures/self-signed.key");

/// An acceptor presenting [`LOCALHOST_CERT`].
pub fn localhost_acceptor() -> TlsAcceptor {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(LOCALHOST_CERT).expect("certificate")],
            PrivateKeyDer::from_pem_slice(LOCALHOST_KEY).expect("key"),
        )
        .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}
