//! Loading the AWS SDK configuration. Endpoints come only from the SDK's standard variables
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, ...) and profile settings, which
//! aws-config resolves itself: production code has no test switch.
//!
//! ## The HTTPS client
//!
//! Every SDK client of one [`SdkConfig`] shares one HTTPS client ([`https_client`]): rustls
//! with aws-lc, like the SDK's default, but trusting Mozilla's root certificates compiled into
//! the binary (webpki-root-certs) instead of the system's store. The default parses the
//! system's store (hundreds of files under `/etc/ssl/certs`) while the first SDK client is
//! built, about half of a Lambda's init; the compiled-in roots cost no I/O, and TLS is
//! verified against them exactly as against the system's (a certificate no Mozilla root
//! vouches for is refused). The roots change with the webpki-root-certs version in
//! `Cargo.lock`, not with the machine.

use std::sync::LazyLock;

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The configuration every Lambda and the CLI start from: the process environment.
pub async fn load() -> SdkConfig {
    load_with(aws_config::defaults(BehaviorVersion::latest())).await
}

/// The same, from a loader the caller prepared (the CLI's explicit endpoint flags, tests'
/// simulated environment).
pub async fn load_with(loader: ConfigLoader) -> SdkConfig {
    loader.http_client(https_client()).load().await
}

/// An SDK error with its whole chain of causes, for logs and messages.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
}

/// The HTTPS client of the SDK clients: the SDK's default connector (rustls with aws-lc, the
/// proxy variables of the environment, the SDK's timeouts) with the compiled-in trust roots.
/// Connectors are built on a client's first request and cached by the client, one per set
/// of timeouts, so clients that share this client share its connection pool too.
pub fn https_client() -> SharedHttpClient {
    let tls = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(MOZILLA_ROOTS_PEM.as_slice()))
        .build();
    // Building a context with a trust store cannot fail today; if a later version finds
    // fault with it, the SDK's own default (the system's store) is still a verifying client.
    let tls = tls.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "compiled-in trust roots refused; using the system's");
        TlsContext::default()
    });
    let client = Builder::new().build_with_connector_fn(move |settings, components| {
        // What the SDK's default client does (aws-smithy-runtime `default_https_client`,
        // through this same constructor), with our trust store.
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(NoPreloadedConnector(client))
}

/// Mozilla's root certificates as one PEM bundle, the form the SDK's trust store takes.
/// Encoded once per process, in memory.
static MOZILLA_ROOTS_PEM: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut pem = Vec::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2048);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in cert.as_ref().chunks(48) {
            pem.extend_from_slice(STANDARD.encode(line).as_bytes());
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
});

/// The SDK's HTTP client without its preloading step.
///
/// When an SDK client is built, the SDK's HTTP client builds a whole connector (a rustls
/// configuration with every trust root parsed) and throws it away, only so that the system's
/// root store is loaded before the first request rather than during it. With the roots
/// compiled in there is nothing to load, and the preloading would parse every root once per
/// SDK client at init (a Lambda builds up to eight clients). The connector of the first request
/// is built either way.
#[derive(Debug)]
struct NoPreloadedConnector(SharedHttpClient);

impl HttpClient for NoPreloadedConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use tokio_rustls::rustls::RootCertStore;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;

    use super::*;

    /// The SDK's connector decodes the bundle and adds each root with `expect`: one root
    /// rustls could not take would fail every first request, so all must decode and parse.
    #[test]
    fn every_compiled_in_root_decodes_and_is_a_trust_anchor() {
        let roots = CertificateDer::pem_slice_iter(&MOZILLA_ROOTS_PEM)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(roots, webpki_root_certs::TLS_SERVER_ROOT_CERTS);
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root).unwrap();
        }
        assert!(store.len() > 100, "{} roots", store.len());
    }
}
