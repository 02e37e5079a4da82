//! Who is asking: every browser gets a random client id in an HttpOnly, SameSite=Strict cookie on
//! its first response. Uploads, jobs and previews belong to that id and are invisible to others.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::AppError;

/// Name of the cookie.
pub const COOKIE_NAME: &str = "cemiface_client";

/// The requesting client's id (32 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(pub String);

impl ClientId {
    fn fresh() -> Self {
        Self(crate::jobs::auth::hex(&crate::jobs::auth::random_bytes(16)))
    }

    /// The id in a request's cookies, if well-formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        crate::jobs::cookie(headers, COOKIE_NAME)
            .filter(|v| v.len() == 32 && v.bytes().all(|c| c.is_ascii_hexdigit()))
            .map(|v| Self(v.to_ascii_lowercase()))
    }
}

/// Middleware: makes sure every request has a [`ClientId`] extension, setting the cookie when the
/// request came without one.
pub async fn assign(State(state): State<crate::state::AppState>, mut req: Request, next: Next) -> Response {
    let (id, new) = match ClientId::from_headers(req.headers()) {
        Some(id) => (id, false),
        None => (ClientId::fresh(), true),
    };
    req.extensions_mut().insert(id.clone());
    let mut res = next.run(req).await;
    if new {
        // `--secure-cookies` (served over https): the browser sends it back over https only.
        let secure = if state.jobs.as_ref().is_some_and(|j| j.secure_cookies) { "; Secure" } else { "" };
        let cookie = format!(
            "{COOKIE_NAME}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000{secure}",
            id.0
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
    fn only_well_formed_ids_are_read_from_cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; cemiface_client=00112233445566778899AABBCCDDEEFF"),
        );
        assert_eq!(
            ClientId::from_headers(&h).unwrap().0,
            "00112233445566778899aabbccddeeff"
        );
        h.insert(COOKIE, HeaderValue::from_static("cemiface_client=../../etc"));
        assert!(ClientId::from_headers(&h).is_none());
        let (a, b) = (ClientId::fresh(), ClientId::fresh());
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 32);
    }
}
