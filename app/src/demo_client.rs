//! Browser side of the live demo: the websocket (reconnecting, binary frames shown through object
//! URLs) and the photo upload. Only ever called from event handlers and effects, which run in the
//! browser; the server renders the page without touching any of this.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Array, Uint8Array};
use leptos::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{BinaryType, Blob, BlobPropertyBag, CloseEvent, MessageEvent, Url, WebSocket};

use crate::demo_protocol::{decode_frame, ClientMessage, FrameMeta, ServerEvent, UploadReply};

/// What arrives on the socket, decoded.
pub enum Incoming {
    Event(ServerEvent),
    /// A binary frame: its kind, metadata, an object URL of its image (revoke when replaced) and,
    /// for the final frame only (the gallery keeps it), the image's bytes.
    Frame(u32, FrameMeta, String, Option<Vec<u8>>),
    /// The socket (re)opened.
    Open,
    /// The socket closed; a reconnect follows.
    Closed,
}

/// A websocket that reconnects by itself one second after it drops.
#[derive(Clone)]
pub struct DemoSocket {
    ws: Rc<RefCell<Option<WebSocket>>>,
}

impl DemoSocket {
    /// Opens the socket of this page; `on` sees everything that arrives.
    pub fn connect(on: impl Fn(Incoming) + 'static) -> Self {
        let me = Self {
            ws: Rc::new(RefCell::new(None)),
        };
        me.open(Rc::new(on));
        me
    }

    fn open(&self, on: Rc<dyn Fn(Incoming)>) {
        let loc = window().location();
        let scheme = if loc.protocol().as_deref() == Ok("https:") {
            "wss"
        } else {
            "ws"
        };
        let url = format!("{scheme}://{}/api/demo/ws", loc.host().unwrap_or_default());
        let Ok(ws) = WebSocket::new(&url) else {
            self.retry(on);
            return;
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on_msg = on.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let data = ev.data();
            if let Some(text) = data.as_string() {
                match serde_json::from_str::<ServerEvent>(&text) {
                    Ok(e) => on_msg(Incoming::Event(e)),
                    Err(e) => leptos::logging::warn!("unreadable event: {e}"),
                }
            } else if let Ok(buf) = data.dyn_into::<js_sys::ArrayBuffer>() {
                let bytes = Uint8Array::new(&buf).to_vec();
                match decode_frame(&bytes) {
                    Ok((kind, meta, img)) => {
                        if let Some(url) = object_url(img, &meta.mime) {
                            let png = (kind == crate::demo_protocol::FRAME_FINAL).then(|| img.to_vec());
                            on_msg(Incoming::Frame(kind, meta, url, png));
                        }
                    }
                    Err(e) => leptos::logging::warn!("unreadable frame: {e}"),
                }
            }
        });
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        message.forget();
        let on_open = on.clone();
        let open = Closure::<dyn FnMut()>::new(move || on_open(Incoming::Open));
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        open.forget();
        let me = self.clone();
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| {
            on(Incoming::Closed);
            me.retry(on.clone());
        });
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        close.forget();
        *self.ws.borrow_mut() = Some(ws);
    }

    fn retry(&self, on: Rc<dyn Fn(Incoming)>) {
        let me = self.clone();
        set_timeout(move || me.open(on), Duration::from_secs(1));
    }

    /// Sends a message; false when the socket is not open.
    pub fn send(&self, msg: &ClientMessage) -> bool {
        let text = serde_json::to_string(msg).expect("messages serialise");
        match &*self.ws.borrow() {
            Some(ws) if ws.ready_state() == WebSocket::OPEN => ws.send_with_str(&text).is_ok(),
            _ => false,
        }
    }
}

/// An object URL of `bytes` as a blob of type `mime`.
pub fn object_url(bytes: &[u8], mime: &str) -> Option<String> {
    let parts = Array::of1(&Uint8Array::from(bytes).into());
    let opts = BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = Blob::new_with_u8_array_sequence_and_options(&parts, &opts).ok()?;
    Url::create_object_url_with_blob(&blob).ok()
}

/// Frees an object URL made for a frame.
pub fn revoke(url: &str) {
    let _ = Url::revoke_object_url(url);
}

/// A random seed in 0..2^32.
pub fn random_seed() -> u64 {
    (js_sys::Math::random() * 4_294_967_296.0) as u64
}

/// Uploads a photo; the error is the server's message.
pub async fn upload(file: web_sys::File) -> Result<UploadReply, String> {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&file);
    let fail = |e: JsValue| {
        format!(
            "upload failed: {}",
            e.as_string().unwrap_or_else(|| format!("{e:?}"))
        )
    };
    let resp: web_sys::Response = JsFuture::from(window().fetch_with_str_and_init("/api/demo/upload", &init))
        .await
        .map_err(fail)?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(fail)?)
        .await
        .map_err(fail)?
        .as_string()
        .unwrap_or_default();
    if resp.ok() {
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer: {e}"))
    } else {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Err(v["error"]["message"]
            .as_str()
            .map_or_else(|| format!("upload failed ({})", resp.status()), str::to_owned))
    }
}

/// Asks the server to forget an uploaded face now.
pub async fn forget(upload_id: &str) {
    let init = web_sys::RequestInit::new();
    init.set_method("DELETE");
    let url = format!("/api/demo/upload/{upload_id}");
    if let Err(e) = JsFuture::from(window().fetch_with_str_and_init(&url, &init)).await {
        leptos::logging::warn!("forget failed: {e:?}");
    }
}
