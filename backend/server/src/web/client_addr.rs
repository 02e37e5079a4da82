//! Where a request comes from, for limits a client cannot reset by dropping or inventing a cookie
//! (demo jobs, sockets and uploads per address, admin login attempts).
//!
//! The address is the connection's peer. Behind a reverse proxy every peer is the proxy, so an
//! operator can name a header the proxy sets (`--trusted-proxy-header X-Forwarded-For`); its last
//! entry (the one the proxy appended) is then used. Without that option the header is ignored:
//! clients can write anything into it. IPv6 addresses count per /64 network, the block one
//! subscriber usually holds.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};

/// The requesting address, as used for limits: `203.0.113.7`, `2001:db8:1:2::/64`, or `local`
/// when the server runs without connection info (in-process tests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub String);

/// How to find the address of a request.
#[derive(Debug, Clone, Default)]
pub struct AddrPolicy {
    /// The header a trusted reverse proxy sets; None: the connection's address only.
    pub proxy_header: Option<HeaderName>,
}

impl AddrPolicy {
    /// A policy honouring `header` (None or empty: none). Errors name the bad header.
    pub fn new(header: Option<&str>) -> anyhow::Result<Self> {
        let proxy_header = match header.map(str::trim).filter(|h| !h.is_empty()) {
            None => None,
            Some(h) => Some(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| anyhow::anyhow!("--trusted-proxy-header: {h:?} is not a header name"))?,
            ),
        };
        Ok(Self { proxy_header })
    }

    /// The address of a request with `headers` that arrived from `peer`.
    pub fn resolve(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> ClientAddr {
        let forwarded = self.proxy_header.as_ref().and_then(|name| {
            let last = headers.get_all(name).iter().next_back()?.to_str().ok()?;
            parse_ip(last.rsplit(',').next()?.trim())
        });
        match forwarded.or(peer.map(|p| p.ip())) {
            Some(ip) => ClientAddr(network(ip)),
            None => ClientAddr("local".into()),
        }
    }
}

/// An IP written as `1.2.3.4`, `1.2.3.4:80`, `::1` or `[::1]:80`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// IPv4 (and IPv4-mapped IPv6) as the address; other IPv6 as its /64 network.
fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Middleware: puts the request's [`ClientAddr`] into its extensions.
pub async fn assign(
    axum::extract::State(state): axum::extract::State<crate::web::state::AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let addr = state.addr_policy.resolve(req.headers(), peer);
    req.extensions_mut().insert(addr);
    next.run(req).await
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Without the middleware (a router built for one test): the connection, else `local`.
        Ok(parts.extensions.get::<ClientAddr>().cloned().unwrap_or_else(|| {
            let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
            AddrPolicy::default().resolve(&parts.headers, peer)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_connection_counts_unless_a_proxy_header_is_trusted() {
        let peer: SocketAddr = "192.0.2.9:5555".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 198.51.100.4")]);
        // Not configured: a client-written header changes nothing.
        assert_eq!(AddrPolicy::default().resolve(&h, Some(peer)).0, "192.0.2.9");
        // Configured: the last entry, the one the proxy appended.
        let p = AddrPolicy::new(Some("X-Forwarded-For")).unwrap();
        assert_eq!(p.resolve(&h, Some(peer)).0, "198.51.100.4");
        // Configured but absent or garbage: the connection.
        assert_eq!(p.resolve(&HeaderMap::new(), Some(peer)).0, "192.0.2.9");
        let bad = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip")]);
        assert_eq!(p.resolve(&bad, Some(peer)).0, "192.0.2.9");
        assert_eq!(p.resolve(&HeaderMap::new(), None).0, "local");
        assert!(AddrPolicy::new(Some("bad header\n")).is_err());
        assert!(AddrPolicy::new(Some(" ")).unwrap().proxy_header.is_none());
    }

    #[test]
    fn ipv6_counts_per_64_network_and_mapped_ipv4_as_ipv4() {
        let p = AddrPolicy::default();
        let a = p.resolve(
            &HeaderMap::new(),
            Some("[2001:db8:1:2:aaaa::1]:80".parse().unwrap()),
        );
        let b = p.resolve(
            &HeaderMap::new(),
            Some("[2001:db8:1:2:bbbb::9]:80".parse().unwrap()),
        );
        let c = p.resolve(&HeaderMap::new(), Some("[2001:db8:1:3::1]:80".parse().unwrap()));
        assert_eq!(a.0, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let m = p.resolve(&HeaderMap::new(), Some("[::ffff:192.0.2.1]:80".parse().unwrap()));
        assert_eq!(m.0, "192.0.2.1");
        let q = AddrPolicy::new(Some("x-real-ip")).unwrap();
        assert_eq!(
            q.resolve(&headers(&[("x-real-ip", "[2001:db8::5]:443")]), None).0,
            "2001:db8::/64"
        );
    }
}
