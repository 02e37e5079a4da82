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
