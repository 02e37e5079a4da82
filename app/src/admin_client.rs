//! Browser side of the admin panel: JSON calls to `/api/admin/*` (the session cookie rides along;
//! writes carry the CSRF token), typed reads of the shared `admin_protocol`, the job-event
//! websocket, and a polling timer as its fallback. Called only from effects and event handlers.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use crate::admin_protocol::{FieldError, JobEvent};
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
            message: e
                .as_string()
                .unwrap_or_else(|| "the server cannot be reached".into()),
            fields: vec![],
        }
    }
}

/// `method url` with an optional JSON body; JSON answer (Null for an empty body).
pub async fn call(
    method: &str,
    url: &str,
    body: Option<&Value>,
    csrf: Option<&str>,
) -> Result<Value, ApiError> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(ApiError::network)?;
    if let Some(b) = body {
        headers
            .set("content-type", "application/json")
            .map_err(ApiError::network)?;
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
        fields: serde_json::from_value::<Vec<FieldError>>(e["fields"].clone())
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.field, f.message))
            .collect(),
    })
}

/// `GET url`, read as one of the protocol's types.
pub async fn get<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, ApiError> {
    send("GET", url, None, None).await
}

/// [`call`], its answer read as one of the protocol's types.
pub async fn send<T: serde::de::DeserializeOwned>(
    method: &str,
    url: &str,
    body: Option<&Value>,
    csrf: Option<&str>,
) -> Result<T, ApiError> {
    let v = call(method, url, body, csrf).await?;
    serde_json::from_value(v).map_err(|e| ApiError {
        status: 200,
        code: "protocol".into(),
        message: format!("unexpected answer from {url}: {e}"),
        fields: vec![],
    })
}

/// Follows `/api/admin/events` while the calling component lives: `on` gets every job event;
/// `live` says whether the socket is open (the pages poll quickly only while it is not). A closed
/// socket is reopened after 2 s, and `on_reconnect` runs so the page fetches what it missed.
pub fn job_events(live: RwSignal<bool>, on: impl Fn(JobEvent) + 'static, on_reconnect: impl Fn() + 'static) {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use wasm_bindgen::closure::Closure;
    use web_sys::{MessageEvent, WebSocket};

    struct Feed {
        on: Box<dyn Fn(JobEvent)>,
        on_reconnect: Box<dyn Fn()>,
        live: RwSignal<bool>,
        socket: RefCell<Option<WebSocket>>,
        ended: Cell<bool>,
        opened_once: Cell<bool>,
    }
    fn open(feed: Rc<Feed>) {
        if feed.ended.get() {
            return;
        }
        let loc = window().location();
        let scheme = if loc.protocol().as_deref() == Ok("https:") {
            "wss"
        } else {
            "ws"
        };
        let url = format!("{scheme}://{}/api/admin/events", loc.host().unwrap_or_default());
        let Ok(ws) = WebSocket::new(&url) else {
            retry(feed);
            return;
        };
        let f = feed.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            if let Some(text) = ev.data().as_string() {
                match serde_json::from_str::<JobEvent>(&text) {
                    Ok(e) => (f.on)(e),
                    Err(e) => leptos::logging::warn!("unreadable job event: {e}"),
                }
            }
        });
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        message.forget();
        let f = feed.clone();
        let opened = Closure::<dyn FnMut()>::new(move || {
            f.live.set(true);
            if f.opened_once.replace(true) {
                (f.on_reconnect)();
            }
        });
        ws.set_onopen(Some(opened.as_ref().unchecked_ref()));
        opened.forget();
        let f = feed.clone();
        let closed = Closure::<dyn FnMut()>::new(move || {
            if !f.ended.get() {
                f.live.set(false);
                retry(f.clone());
            }
        });
        ws.set_onclose(Some(closed.as_ref().unchecked_ref()));
        closed.forget();
        *feed.socket.borrow_mut() = Some(ws);
    }
    fn retry(feed: Rc<Feed>) {
        set_timeout(move || open(feed), Duration::from_secs(2));
    }
    let feed = Rc::new(Feed {
        on: Box::new(on),
        on_reconnect: Box::new(on_reconnect),
        live,
        socket: RefCell::new(None),
        ended: Cell::new(false),
        opened_once: Cell::new(false),
    });
    open(feed.clone());
    let feed = send_wrapper::SendWrapper::new(feed);
    on_cleanup(move || {
        feed.ended.set(true);
        if let Some(ws) = feed.socket.borrow_mut().take() {
            let _ = ws.close();
        }
    });
}

/// Runs `tick` now and then every `every` while the calling component lives.
pub fn poll(every: Duration, tick: impl Fn() + Clone + 'static) {
    tick();
    if let Ok(h) = set_interval_with_handle(tick, every) {
        on_cleanup(move || h.clear());
    }
}
