//! Webhooks over https to a local TLS receiver (127.0.0.1 only) whose certificate is signed by a
//! test CA (`scripts/make-test-certs.sh`): delivered and signed when the CA is trusted through
//! `--webhook-ca-file`, refused when it is not, and a redirect is never followed.

use std::path::PathBuf;
use std::sync::Arc;

use cemiface_server::jobs::webhook::WebhookPolicy;
use cemiface_server::web::auth::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// One request as received: the head (request line and headers) and the body.
struct Received {
    head: String,
    body: Vec<u8>,
}

/// An https receiver on 127.0.0.1 answering every request with `answer`; requests go to the channel.
async fn receiver(answer: &'static str) -> (u16, mpsc::UnboundedReceiver<Received>) {
    let certs = vec![CertificateDer::from_pem_file(fixture("leaf.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(fixture("leaf.key")).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                }; // an untrusting client hangs up
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body) = loop {
                    let n = tls.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the request ended early");
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).to_string();
                    if let Some((head, _)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if raw.len() >= head.len() + 4 + len {
                            break (
                                head.to_owned(),
                                raw[head.len() + 4..head.len() + 4 + len].to_vec(),
                            );
                        }
                    }
                };
                tls.write_all(answer.as_bytes()).await.unwrap();
                tls.shutdown().await.ok();
                tx.send(Received { head, body }).unwrap();
            });
        }
    });
    (port, rx)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn https_webhooks_are_signed_trusted_by_ca_file_and_never_redirected() {
    let (port, mut got) = receiver("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let trusting = WebhookPolicy::new(true, Some(&fixture("ca.pem"))).unwrap();
    let body = br#"{"event":"generation.finished","id":7}"#;
    for host in ["localhost", "127.0.0.1"] {
        let code = trusting
            .deliver(&format!("https://{host}:{port}/hook?x=1"), "secret", body)
            .await
            .unwrap();
        assert_eq!(code, 200);
        let r = got.recv().await.unwrap();
        assert!(r.head.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{}", r.head);
        assert_eq!(r.body, body);
        assert_eq!(
            header(&r.head, "x-cemiface-signature"),
            Some(sign("secret", body).as_str())
        );
        assert_eq!(header(&r.head, "content-type"), Some("application/json"));
    }

    // Without the CA the certificate is not trusted: no request arrives, the error says why.
    let e = WebhookPolicy::new(true, None)
        .unwrap()
        .deliver(&format!("https://localhost:{port}/hook"), "s", body)
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    assert!(
        got.try_recv().is_err(),
        "nothing was delivered to an untrusted endpoint"
    );

    // A redirect is reported, not followed (one request, no retry).
    let (port, mut got) =
        receiver("HTTP/1.1 302 Found\r\nlocation: https://localhost:9/else\r\ncontent-length: 0\r\n\r\n")
            .await;
    let e = trusting
        .deliver(&format!("https://localhost:{port}/hook"), "s", body)
        .await
        .unwrap_err();
    assert!(e.contains("HTTP 302 (redirects are not followed)"), "{e}");
    assert!(got.recv().await.is_some());
    assert!(got.try_recv().is_err(), "one request only");
}
