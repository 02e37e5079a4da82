//! Who is asking: every browser gets a random client id in an HttpOnly, SameSite=Strict cookie on
//! its first response. Uploads, jobs and previews belong to that id and are invisible to others.
//!
//! The cookie is `<id>.<tag>`, the tag an HMAC-SHA256 of the id under a key of this server process:
//! a client cannot pick or invent an id (a forged or unsigned cookie gets a fresh id). Fresh ids
//! are free to get, so the limits that matter also count per address (`web::client_addr`).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::web::error::AppError;

/// Name of the cookie.
pub const COOKIE_NAME: &str = "cemiface_client";

/// The requesting client's id (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(pub String);

/// The key that signs client ids.
pub struct ClientKey([u8; 32]);

impl ClientKey {
    /// A fresh random key (ids signed by an earlier process are replaced on the next request).
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        k.copy_from_slice(&crate::web::auth::random_bytes(32));
        Self(k)
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        m.update(id.as_bytes());
        m
    }

    /// The cookie value for `id`: the id, a dot, 128 bits of its tag in hex.
    pub fn sign(&self, id: &ClientId) -> String {
        let tag = self.mac(&id.0).finalize().into_bytes();
        format!("{}.{}", id.0, crate::web::auth::hex(&tag[..16]))
    }

    /// The id of a cookie value this key signed; None for anything else (checked in constant time).
    pub fn verify(&self, value: &str) -> Option<ClientId> {
        let (id, tag) = value.split_once('.')?;
        let hex32 = |s: &str| s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit());
        if !hex32(id) || !hex32(tag) {
            return None;
        }
        let id = id.to_ascii_lowercase();
        let tag: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&tag[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .ok()?;
        self.mac(&id).verify_truncated_left(&tag).ok()?;
        Some(ClientId(id))
    }
}

impl ClientId {
    fn fresh() -> Self {
        Self(crate::web::auth::hex(&crate::web::auth::random_bytes(16)))
    }

    /// The id in a request's cookies, if `key` signed it.
    pub fn from_headers(headers: &HeaderMap, key: &ClientKey) -> Option<Self> {
        crate::web::auth::cookie(headers, COOKIE_NAME).and_then(|v| key.verify(&v))
    }
}

/// Middleware: makes sure every request has a [`ClientId`] extension, setting the cookie when the
/// request came without one.
pub async fn assign(
    State(state): State<crate::web::state::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let (id, new) = match ClientId::from_headers(req.headers(), &state.client_key) {
        Some(id) => (id, false),
        None => (ClientId::fresh(), true),
    };
    req.extensions_mut().insert(id.clone());
    let mut res = next.run(req).await;
    if new {
        // `--secure-cookies` (served over https): the browser sends it back over https only.
        let secure = if state.jobs.as_ref().is_some_and(|j| j.secure_cookies) {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000{secure}",
            state.client_key.sign(&id)
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(SET_COOKIE, v);
        }
    }
    res
}

impl<S: Send + Sync> FromRequestParts<S> for ClientId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientId>()
            .cloned()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the client-id middleware is not installed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::COOKIE;

    #[test]
    fn only_ids_this_server_signed_are_read_from_cookies() {
        let key = ClientKey::random();
        let id = ClientId("00112233445566778899aabbccddeeff".into());
        let signed = key.sign(&id);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=1; cemiface_client={signed}")).unwrap(),
        );
        assert_eq!(ClientId::from_headers(&h, &key).unwrap(), id);
        // Upper-case hex of the same id and tag still verifies.
        let upper =
            HeaderValue::from_str(&format!("cemiface_client={}", signed.to_ascii_uppercase())).unwrap();
        h.insert(COOKIE, upper);
        assert_eq!(ClientId::from_headers(&h, &key).unwrap(), id);
        // Another process's key, an unsigned id, a changed id or tag, garbage: no id.
        assert!(ClientId::from_headers(&h, &ClientKey::random()).is_none());
        let (plain, tag) = signed.split_once('.').unwrap();
        let other = format!("ffffffffffffffffffffffffffffffff.{tag}");
        let last = if tag.ends_with('0') { '1' } else { '0' };
        let flipped = format!("{plain}.{}{last}", &tag[..31]);
        for bad in [plain, other.as_str(), flipped.as_str(), "../../etc", "a.b", ""] {
            h.insert(
                COOKIE,
                HeaderValue::from_str(&format!("cemiface_client={bad}")).unwrap(),
            );
            assert!(ClientId::from_headers(&h, &key).is_none(), "{bad}");
        }
        let (a, b) = (ClientId::fresh(), ClientId::fresh());
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 32);
    }
}
