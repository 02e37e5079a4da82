//! Browser side of the admin panel: JSON calls to `/api/admin/*` (the session cookie rides along;
//! writes carry the CSRF token) and a polling timer. Called only from effects and event handlers.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A failed call: HTTP status, the server's error code and message, and field errors of a 422.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl ApiError {
    fn network(e: JsValue) -> Self {
        Self {
            status: 0,
            code: "network".into(),
            message: e.as_string().unwrap_or_else(|| "the server cannot be reached".into()),
            fields: vec![],
        }
    }
}

/// `method url` with an optional JSON body; JSON answer (Null for an empty body).
pub async fn call(method: &str, url: &str, body: Option<&Value>, csrf: Option<&str>) -> Result<Value, ApiError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(ApiError::network)?;
    if let Some(b) = body {
        headers.set("content-type", "application/json").map_err(ApiError::network)?;
        init.set_body(&JsValue::from_str(&b.to_string()));
    }
    if let Some(t) = csrf {
        headers.set("x-csrf-token", t).map_err(ApiError::network)?;
    }
    init.set_headers(&headers);
    let resp: web_sys::Response = JsFuture::from(window().fetch_with_str_and_init(url, &init))
        .await
        .map_err(ApiError::network)?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(ApiError::network)?)
        .await
        .map_err(ApiError::network)?
        .as_string()
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if resp.ok() {
        return Ok(v);
    }
    let e = &v["error"];
    Err(ApiError {
        status: resp.status(),
        code: e["code"].as_str().unwrap_or("error").into(),
        message: e["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", resp.status()), str::to_owned),
        fields: e["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["field"].as_str().unwrap_or_default().to_owned(),
                            f["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Runs `tick` now and then every `every` while the calling component lives.
pub fn poll(every: Duration, tick: impl Fn() + Clone + 'static) {
    tick();
    if let Ok(h) = set_interval_with_handle(tick, every) {
        on_cleanup(move || h.clear());
    }
}

/// "3m07s" / "1h02m".
pub fn eta(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "--".into();
    }
    let s = seconds as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Bytes as "12.3 MB".
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} kB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_bytes_read_like_the_cli() {
        assert_eq!(eta(187.0), "3m07s");
        assert_eq!(eta(3720.0), "1h02m");
        assert_eq!(eta(f64::NAN), "--");
        assert_eq!(bytes(1536), "1.5 kB");
        assert_eq!(bytes(5 << 20), "5.0 MB");
    }
}
