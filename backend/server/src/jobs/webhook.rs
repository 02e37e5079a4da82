//! Completion webhooks: a JSON POST signed with the API key's webhook secret
//! (`X-CemiFace-Signature: sha256=<HMAC-SHA256 of the body>`), over https (rustls; Mozilla's roots,
//! the system's roots and any `--webhook-ca-file`) or http, retried three times.
//!
//! Address policy (server-side request forgery): by default a webhook may only reach public unicast
//! addresses. Loopback, private (RFC 1918, ULA), link-local (cloud metadata at 169.254.169.254),
//! shared (100.64/10), multicast, broadcast, documentation and unspecified addresses are refused,
//! both for IP literals (at submission) and for every address a host name resolves to (at delivery,
//! by the resolver the HTTP client connects through, so DNS rebinding cannot slip past).
//! `--webhook-allow-private` lifts it for labs whose receivers live on their own network.
//! Redirects are never followed; each try has a 10 s connect and 30 s total timeout.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::web::auth::sign;

/// Where webhooks may go, and which extra certificates https endpoints may present.
#[derive(Debug, Clone, Default)]
pub struct WebhookPolicy {
    /// Also allow loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
    /// Extra trusted root certificates (PEM), e.g. a lab's internal CA.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl WebhookPolicy {
    /// The policy with the roots of a PEM file; the error names the file and what is wrong.
    pub fn new(allow_private: bool, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let extra_roots_pem = match ca_file {
            None => None,
            Some(p) => {
                let pem = std::fs::read(p)
                    .map_err(|e| anyhow::anyhow!("--webhook-ca-file {}: {e}", p.display()))?;
                reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| {
                        anyhow::anyhow!("--webhook-ca-file {}: no PEM certificate in it", p.display())
                    })?;
                Some(pem)
            }
        };
        Ok(Self {
            allow_private,
            extra_roots_pem,
        })
    }

    /// Checks a webhook URL before it is accepted: http(s), a host, no credentials, no control or
    /// space characters, and an IP literal only where the policy allows it.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        let u = Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(u.scheme(), "https" | "http") {
            return Err("must start with https:// (or http://)".into());
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("must not carry credentials (the body is signed instead)".into());
        }
        let ip = match u.host() {
            None => return Err("has no host".into()),
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(url::Host::Domain(_)) => None,
        };
        if let Some(ip) = ip.filter(|&ip| !self.allows(ip)) {
            return Err(format!(
                "{ip} is not a public address (the server runs without --webhook-allow-private)"
            ));
        }
        Ok(u)
    }

    /// Whether the policy lets a webhook connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("cemiface/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver(self.clone())));
        if let Some(pem) = &self.extra_roots_pem {
            for c in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
                b = b.add_root_certificate(c);
            }
        }
        b.build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    /// Sends `body` to `url`, signed with `secret`; retries after 1 s and 5 s. Returns the status
    /// of the first 2xx answer, or what went wrong last.
    pub async fn deliver(&self, url: &str, secret: &str, body: &[u8]) -> Result<u16, String> {
        let url = self.check_url(url)?;
        let client = self.client()?;
        let signature = sign(secret, body);
        let mut last = String::new();
        for wait in [0u64, 1, 5] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let sent = client
                .post(url.clone())
                .header("content-type", "application/json")
                .header("x-cemiface-signature", &signature)
                .body(body.to_vec())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
                Ok(r) if r.status().is_redirection() => {
                    return Err(format!(
                        "HTTP {} (redirects are not followed)",
                        r.status().as_u16()
                    ))
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(e) => last = error_chain(&e),
            }
        }
        Err(last)
    }
}

/// An error and its sources, on one line (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Resolves with the system resolver, then keeps only the addresses the policy allows.
struct PolicyResolver(WebhookPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.allows(a.ip())).collect();
            if kept.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to addresses a webhook may not reach ({}); see --webhook-allow-private",
                    shown.join(", ")
                )
                .into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Globally routable unicast: not loopback, private, link-local, shared, multicast, broadcast,
/// documentation, benchmarking, reserved or unspecified (IPv4-mapped IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_unspecified()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 protocol assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
                || o[0] >= 240) // reserved
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 (maps IPv4, any of it)
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_delivery() {
        let strict = WebhookPolicy::default();
        assert_eq!(
            strict
                .check_url("https://hooks.example.org/x?y=1")
                .unwrap()
                .port_or_known_default(),
            Some(443)
        );
        assert!(strict.check_url("http://hooks.example.org:8080/x").is_ok());
        for (bad, why) in [
            ("ftp://example.org/", "https://"),
            ("https://u:p@example.org/", "credentials"),
            ("https://example.org/a b", "spaces"),
            ("https://example.org/\r\nX-Evil: 1", "control"),
            ("https://127.0.0.1:9/", "not a public address"),
            ("https://[::1]/", "not a public address"),
            ("http://169.254.169.254/latest/meta-data/", "not a public address"),
            ("http://0x7f000001/", "not a public address"),
            ("not a url", "spaces"),
            ("https://", "not a valid URL"),
        ] {
            let e = strict.check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let lab = WebhookPolicy {
            allow_private: true,
            ..Default::default()
        };
        assert!(lab.check_url("http://127.0.0.1:9/hook").is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_are_refused_without_a_connection() {
        // "localhost" resolves to loopback; the resolver drops it, so nothing is ever sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let e = WebhookPolicy::default()
            .deliver(&format!("http://localhost:{port}/hook"), "s", b"{}")
            .await
            .unwrap_err();
        assert!(
            e.contains("localhost resolves only to addresses a webhook may not reach"),
            "{e}"
        );
        assert!(listener.accept().is_err(), "no connection was made");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("cemiface-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty.pem"), b"hello").unwrap();
        let e = WebhookPolicy::new(false, Some(&dir.join("empty.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.pem: no PEM certificate"), "{e}");
        let e = WebhookPolicy::new(false, Some(&dir.join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
