//! `GET /api/demo/ws`: one websocket per page. Text messages in ([`ClientMessage`]), JSON events
//! and binary frames out; heartbeats; a reconnecting page re-subscribes to its job and gets its
//! state events and last preview again.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cemiface_app::demo_protocol::{ClientMessage, ServerEvent};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::client::ClientId;
use super::job::{select, Item, Job};
use super::{Demo, DemoError};
use crate::web::client_addr::ClientAddr;
use crate::web::error::AppError;
use crate::web::state::AppState;

/// Preview frames a subscriber may fall behind before older ones are skipped.
const MAX_PREVIEW_LAG: usize = 4;

/// Largest message a page may send (the protocol's messages are a few hundred bytes); a larger one
/// closes the socket (1009) before it is buffered whole.
pub const MAX_CLIENT_MESSAGE: usize = 64 << 10;

/// Open sockets per client id; [`SocketCounts::open`] hands out a slot that frees itself.
#[derive(Debug, Default, Clone)]
pub struct SocketCounts(Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

/// One open socket of a client; dropping it frees the slot.
pub struct SocketSlot {
    counts: SocketCounts,
    client: String,
}

impl SocketCounts {
    /// A slot for one more socket of `client`, or None when it already holds `max`.
    pub fn open(&self, client: &str, max: usize) -> Option<SocketSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(client.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            counts: self.clone(),
            client: client.to_owned(),
        })
    }

    /// Sockets `client` holds now.
    pub fn held(&self, client: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// At most `max` characters of a client-supplied text, for echoing it in an error.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max).chain("…".chars()).collect()
    }
}

/// The upgrade handler.
pub async fn connect(
    State(state): State<AppState>,
    client: ClientId,
    addr: ClientAddr,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !crate::web::auth::same_origin(&headers) {
        return AppError::from(DemoError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "websocket connections are only accepted from this server's own pages",
        ))
        .into_response();
    }
    let demo = state.demo.clone();
    let Some(slot) = demo.sockets.open(&client.0, demo.settings.max_sockets_per_client) else {
        return AppError::from(DemoError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            format!(
                "this browser already has {} demo connections open; close a tab and retry",
                demo.settings.max_sockets_per_client
            ),
        ))
        .into_response();
    };
    let addr_key = format!("addr:{}", addr.0);
    let Some(addr_slot) = demo
        .sockets
        .open(&addr_key, demo.settings.max_sockets_per_address)
    else {
        return AppError::from(DemoError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            format!(
                "{} demo connections are open from your network (the most one network may hold); \
                 close some and retry",
                demo.settings.max_sockets_per_address
            ),
        ))
        .into_response();
    };
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            session(socket, demo, client, addr).await;
            drop((slot, addr_slot));
        })
}

fn text(event: &ServerEvent) -> Message {
    Message::Text(serde_json::to_string(event).expect("events serialise").into())
}

async fn session(socket: WebSocket, demo: Arc<Demo>, client: ClientId, addr: ClientAddr) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(8);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut forwarders = JoinSet::new();
    let mut heartbeat = tokio::time::interval(demo.settings.heartbeat);
    heartbeat.tick().await;
    if tx.send(text(&demo.hello())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let reply = match msg {
                    Message::Text(t) => handle(&demo, &client, &addr, &t, &mut forwarders, &tx).err(),
                    Message::Binary(_) => Some(DemoError::new(
                        StatusCode::BAD_REQUEST, "bad_message", "send JSON text messages").event(None)),
                    Message::Close(_) => break,
                    _ => None,
                };
                if let Some(event) = reply {
                    if tx.send(text(&event)).await.is_err() { break }
                }
            }
            _ = heartbeat.tick() => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                if tx.send(text(&ServerEvent::Heartbeat { server_time_ms: now })).await.is_err()
                    || tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Jobs keep running: the page may reconnect and subscribe again.
    forwarders.abort_all();
    drop(tx);
    let _ = writer.await;
}

/// Handles one client message; errors become error events.
fn handle(
    demo: &Demo,
    client: &ClientId,
    addr: &ClientAddr,
    text: &str,
    forwarders: &mut JoinSet<()>,
    tx: &mpsc::Sender<Message>,
) -> Result<(), ServerEvent> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|e| {
        DemoError::new(
            StatusCode::BAD_REQUEST,
            "bad_message",
            clip(&format!("cannot read the message: {e}"), 200),
        )
        .event(None)
    })?;
    let queue = demo.queue().ok_or_else(|| {
        let why = demo.model().err().unwrap_or_default();
        DemoError::new(StatusCode::SERVICE_UNAVAILABLE, "no_model", why).event(None)
    })?;
    match msg {
        ClientMessage::Submit(request) => {
            request.validate().map_err(|m| {
                DemoError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m).event(None)
            })?;
            let face = demo
                .uploads
                .get(&client.0, &request.upload_id)
                .map_err(|e| e.event(None))?;
            let job = queue
                .submit(&client.0, &addr.0, request, face.inquiry.clone())
                .map_err(|e| e.event(None))?;
            forwarders.spawn(forward(job, tx.clone(), false));
        }
        ClientMessage::Cancel { job_id } => queue
            .cancel(&client.0, job_id)
            .map_err(|e| e.event(Some(job_id)))?,
        ClientMessage::Subscribe { job_id } => {
            let job = queue.get(&client.0, job_id).map_err(|e| e.event(Some(job_id)))?;
            forwarders.spawn(forward(job, tx.clone(), true));
        }
    }
    Ok(())
}

/// Sends a job's items to one socket until the job has ended and everything is sent.
pub(crate) async fn forward(job: Arc<Job>, tx: mpsc::Sender<Message>, mut replay: bool) {
    let mut changed = job.watch();
    let mut sent = 0;
    loop {
        let (batch, total, finished) = {
            let log = job.log();
            (
                select(&log.items, sent, MAX_PREVIEW_LAG, replay),
                log.items.len(),
                log.finished.is_some(),
            )
        };
        replay = false;
        sent = total;
        for item in batch {
            let msg = match item {
                Item::Text(t) => Message::Text(t.to_string().into()),
                Item::Preview(b) | Item::Final(b) => Message::Binary(b.to_vec().into()),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        if finished {
            return;
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}
