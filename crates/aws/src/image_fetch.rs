//! The image fetcher: an OpenAI `image_url` with an `https` URL, fetched where the deployment
//! allows it, and only there.
//!
//! A Lambda that fetches URLs a caller chooses is a server-side request forgery waiting to
//! happen (the instance metadata endpoint, services inside the VPC), so the fetch is off unless
//! the operator lists the hosts (`QUARRY_IMAGE_URL_HOSTS`), and then:
//! * `https` only, on a listed host (exact, or `*.example.com` for its subdomains);
//! * the host's addresses must be public (loopback, private, link-local, unique-local and
//!   metadata addresses are refused) unless the operator says otherwise, and the connection
//!   goes to the addresses checked (no second lookup to rebind);
//! * no redirects; at most 3.75 MB (Bedrock's image limit); a time limit (5 s by default).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use quarry_core::media::MAX_IMAGE_BYTES;
use quarry_core::ports::ImageFetcher;

/// Where and how images may be fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFetchPolicy {
    /// Hosts images may come from (`cdn.example.com`, `*.example.com`); empty: no fetch.
    pub hosts: Vec<String>,
    pub timeout: Duration,
    /// Fetch from private addresses too (images served inside the VPC).
    pub private_addresses: bool,
    /// Extra trusted CA certificates (PEM), for hosts with an internal CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl ImageFetchPolicy {
    /// `QUARRY_IMAGE_URL_HOSTS` (comma-separated), `QUARRY_IMAGE_URL_TIMEOUT_MS`,
    /// `QUARRY_IMAGE_URL_PRIVATE` (`true`), `QUARRY_IMAGE_URL_CA` (a PEM file).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let hosts: Vec<String> = get("QUARRY_IMAGE_URL_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let timeout = Duration::from_millis(crate::settings::env_u64(
            &get,
            "QUARRY_IMAGE_URL_TIMEOUT_MS",
            5_000,
        )?);
        let ca_pem = match get("QUARRY_IMAGE_URL_CA").filter(|p| !p.is_empty()) {
            Some(path) => Some(
                std::fs::read(&path)
                    .map_err(|e| format!("QUARRY_IMAGE_URL_CA: cannot read {path}: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            hosts,
            timeout,
            private_addresses: get("QUARRY_IMAGE_URL_PRIVATE").is_some_and(|v| v == "true"),
            ca_pem,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.hosts.is_empty()
    }

    fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => h == host,
        })
    }

    /// The host and port of a URL this policy lets Quarry fetch; why not otherwise. The
    /// URL is parsed as the client will parse it, so the host checked is the host reached.
    pub fn check_url(&self, url: &str) -> Result<(String, u16), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid image URL: {e}"))?;
        if parsed.scheme() != "https" {
            return Err("only https image URLs are fetched".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("image URLs with credentials are not fetched".into());
        }
        let host = match (parsed.domain(), parsed.host_str()) {
            (Some(d), _) => d.to_ascii_lowercase(),
            (None, Some(_)) => {
                return Err("images are not fetched from IP addresses: name a host".into());
            }
            (None, None) => return Err("the image URL has no host".into()),
        };
        if !self.allows_host(&host) {
            return Err(format!(
                "images are fetched only from this deployment's hosts ({}); '{host}' is not one of them: send the image inline as a data URL",
                self.hosts.join(", ")
            ));
        }
        Ok((host, parsed.port_or_known_default().unwrap_or(443)))
    }

    /// Whether an address of the host may be connected to.
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        self.private_addresses || is_public(ip)
    }
}

/// Not loopback, private, link-local (the metadata endpoint), unique-local, shared,
/// documentation, multicast or unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Fetches over `https` with rustls, under an [`ImageFetchPolicy`].
pub struct HttpImageFetcher {
    policy: ImageFetchPolicy,
}

impl HttpImageFetcher {
    pub fn new(policy: ImageFetchPolicy) -> Self {
        Self { policy }
    }

    /// A client that connects `host` to the addresses checked, speaks only https, follows
    /// no redirect, and trusts Mozilla's roots (compiled in, as the SDK clients do: see
    /// `sdk`) and the operator's CA.
    fn client(&self, host: &str, addresses: &[SocketAddr]) -> Result<reqwest::Client, String> {
        let mut roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
            .collect::<Vec<_>>();
        if let Some(pem) = &self.policy.ca_pem {
            roots.extend(
                reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("the image CA is not PEM: {e}"))?,
            );
        }
        reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.policy.timeout)
            .connect_timeout(self.policy.timeout)
            .resolve_to_addrs(host, addresses)
            .tls_certs_only(roots)
            .build()
            .map_err(|e| format!("cannot fetch images here: {e}"))
    }
}

#[async_trait]
impl ImageFetcher for HttpImageFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let (host, port) = self.policy.check_url(url)?;
        let lookup = tokio::time::timeout(
            self.policy.timeout,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| format!("looking up {host} timed out"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        let addresses: Vec<SocketAddr> = lookup.collect();
        if addresses.is_empty() || !addresses.iter().all(|a| self.policy.allows_address(a.ip())) {
            return Err(format!(
                "{host} resolves to a private address: images are not fetched from there"
            ));
        }
        let client = self.client(&host, &addresses)?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch the image: {}", without_url(e)))?;
        if !response.status().is_success() {
            return Err(format!(
                "fetching the image answered HTTP {}",
                response.status().as_u16()
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_IMAGE_BYTES as u64)
        {
            return Err(format!(
                "the image is larger than Bedrock's {MAX_IMAGE_BYTES} bytes (3.75 MB)"
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot fetch the image: {}", without_url(e)))?
        {
            if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                return Err(format!(
                    "the image is larger than Bedrock's {MAX_IMAGE_BYTES} bytes (3.75 MB)"
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// An error without its URL (the caller knows it; it may carry a signed query string), with
/// its causes.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> ImageFetchPolicy {
        ImageFetchPolicy {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            timeout: Duration::from_secs(1),
            ..Default::default()
        }
    }

    #[test]
    fn only_https_urls_on_listed_hosts() {
        let p = policy(&["cdn.example.com", "*.images.example.org"]);
        assert_eq!(
            p.check_url("https://cdn.example.com/a.png").unwrap(),
            ("cdn.example.com".into(), 443)
        );
        assert_eq!(
            p.check_url("https://x.images.example.org:8443/a.png?sig=1")
                .unwrap(),
            ("x.images.example.org".into(), 8443)
        );
        for bad in [
            "http://cdn.example.com/a.png",
            "https://evil.com/a.png",
            "https://cdn.example.com.evil.com/a.png",
            "https://images.example.org/a.png",
            "https://xcdn.example.com/a.png",
            "https://user:pw@cdn.example.com/a.png",
            "https://evil.com#@cdn.example.com/",
            "https://cdn.example.com@evil.com/",
            "https://[::1]/a.png",
            "ftp://cdn.example.com/a.png",
        ] {
            assert!(p.check_url(bad).is_err(), "{bad}");
        }
        assert!(!policy(&[]).enabled());
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let p = policy(&["h"]);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!p.allows_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["52.95.110.1", "2600:1f18::1"] {
            assert!(p.allows_address(ip.parse().unwrap()), "{ip}");
        }
        let inside = ImageFetchPolicy {
            private_addresses: true,
            ..p
        };
        assert!(inside.allows_address("10.1.2.3".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_refused_url_makes_no_connection() {
        let f = HttpImageFetcher::new(policy(&["cdn.example.com"]));
        let e = f.fetch("https://169.254.169.254/latest").await.unwrap_err();
        assert!(e.contains("IP addresses"), "{e}");
        let e = f.fetch("https://evil.com/x.png").await.unwrap_err();
        assert!(e.contains("not one of them"), "{e}");
    }
}
