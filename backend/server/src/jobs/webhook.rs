//! Completion webhooks: a JSON POST signed with the API key's webhook secret
//! (`X-CemiFace-Signature: sha256=<HMAC-SHA256 of the body>`), retried three times. Plain
//! `http://` URLs only: put a TLS-terminating relay in front for https endpoints.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::auth::sign;

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses a webhook URL; the error says what is wrong.
pub fn parse(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("must start with http:// (https endpoints need a relay: see the README)")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("not a valid http URL".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| "the port is not a number")?),
        None => (authority, 80),
    };
    if host.is_empty() || host.len() > 253 {
        return Err("not a valid host".into());
    }
    Ok(HttpUrl {
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// One POST; Ok(status code).
fn post_once(url: &HttpUrl, body: &[u8], signature: &str) -> std::io::Result<u16> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the host does not resolve"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         User-Agent: cemiface/{}\r\nX-CemiFace-Signature: {signature}\r\nConnection: close\r\n\r\n",
        url.path,
        url.host,
        url.port,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut status = [0u8; 12];
    s.read_exact(&mut status)?;
    let text = String::from_utf8_lossy(&status);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))
}

/// Sends `body` to `url`, signed with `secret`; retries after 1 s and 5 s. Returns the last outcome.
pub fn deliver(url: &str, secret: &str, body: &[u8]) -> Result<u16, String> {
    let url = parse(url)?;
    let signature = sign(secret, body);
    let mut last = String::new();
    for wait in [0u64, 1, 5] {
        std::thread::sleep(Duration::from_secs(wait));
        match post_once(&url, body, &signature) {
            Ok(code) if (200..300).contains(&code) => return Ok(code),
            Ok(code) => last = format!("HTTP {code}"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse("http://127.0.0.1:9000/hook?x=1").unwrap(),
            HttpUrl { host: "127.0.0.1".into(), port: 9000, path: "/hook?x=1".into() }
        );
        assert_eq!(parse("http://example.org").unwrap().port, 80);
        assert!(parse("https://example.org/").is_err());
        assert!(parse("http://u:p@h/").is_err());
        assert!(parse("http://h:x/").is_err());
        assert!(parse("http://h/a b").is_err());
    }
}
