//! One demo job and its event log: the ordered JSON events and binary frames every subscriber of
//! the job reads from, so a reconnecting page can replay state and the last preview.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use cemiface_app::demo_protocol::{encode_frame, FrameMeta, JobRequest, ServerEvent};
use tokio::sync::watch;

use crate::demo::model::Inquiry;

/// Something a subscriber sends: a JSON text event or a binary frame.
#[derive(Debug, Clone)]
pub enum Item {
    Text(Arc<str>),
    Preview(Arc<[u8]>),
    Final(Arc<[u8]>),
}

/// A job of the sampling queue.
pub struct Job {
    pub id: u64,
    /// The client (cookie) that submitted it; only it sees the job.
    pub owner: String,
    /// The address it came from (`web::client_addr`), for the per-address share of the queue.
    pub addr: String,
    pub request: JobRequest,
    /// The identity to sample from (C_id of the uploaded face).
    pub inquiry: Inquiry,
    pub submitted: Instant,
    cancel: AtomicBool,
    log: Mutex<Log>,
    /// Bumped on every new item; subscribers wait on it.
    changed: watch::Sender<usize>,
}

/// The items so far, in order, and whether the job has ended.
#[derive(Default)]
pub struct Log {
    pub items: Vec<Item>,
    /// Set when the job has ended (done, cancelled or failed): no more items follow.
    pub finished: Option<Instant>,
    seq: u64,
}

impl Job {
    pub fn new(id: u64, owner: String, addr: String, request: JobRequest, inquiry: Inquiry) -> Self {
        Self {
            id,
            owner,
            addr,
            request,
            inquiry,
            submitted: Instant::now(),
            cancel: AtomicBool::new(false),
            log: Mutex::new(Log::default()),
            changed: watch::channel(0).0,
        }
    }

    /// Asks the worker to stop at the next step.
    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The log, locked.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver woken whenever an item is appended.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }

    /// Appends a JSON event built from the next sequence number; `finish` ends the log.
    pub fn push_event(&self, finish: bool, event: impl FnOnce(u64) -> ServerEvent) {
        let mut log = self.log();
        if log.finished.is_some() {
            return;
        }
        log.seq += 1;
        let text = serde_json::to_string(&event(log.seq)).expect("events serialise");
        log.items.push(Item::Text(text.into()));
        if finish {
            log.finished = Some(Instant::now());
        }
        let n = log.items.len();
        drop(log);
        self.changed.send_replace(n);
    }

    /// Appends a binary frame whose metadata takes the next sequence number.
    pub fn push_frame(&self, kind: u32, meta: impl FnOnce(u64) -> FrameMeta, image: &[u8]) {
        let mut log = self.log();
        if log.finished.is_some() {
            return;
        }
        log.seq += 1;
        let bytes: Arc<[u8]> = encode_frame(kind, &meta(log.seq), image).into();
        log.items
            .push(if kind == cemiface_app::demo_protocol::FRAME_FINAL {
                Item::Final(bytes)
            } else {
                Item::Preview(bytes)
            });
        let n = log.items.len();
        drop(log);
        self.changed.send_replace(n);
    }

    /// Whether the job has ended.
    pub fn finished(&self) -> bool {
        self.log().finished.is_some()
    }
}

/// What a subscriber sends next from `items[from..]`: every text event and final frame, and of
/// the preview frames only those not overtaken by more than `max_lag` newer previews (a slow
/// socket gets the newest preview instead of a backlog). With `replay`, only the last preview.
pub fn select(items: &[Item], from: usize, max_lag: usize, replay: bool) -> Vec<Item> {
    let pending = &items[from.min(items.len())..];
    let previews = pending.iter().filter(|i| matches!(i, Item::Preview(_))).count();
    let keep_from = if replay {
        previews.saturating_sub(1)
    } else {
        previews.saturating_sub(max_lag + 1)
    };
    let mut seen = 0;
    pending
        .iter()
        .filter(|i| match i {
            Item::Preview(_) => {
                seen += 1;
                seen > keep_from
            }
            _ => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Text(t) => t.to_string(),
                Item::Preview(b) => format!("p{}", b[0]),
                Item::Final(_) => "final".into(),
            })
            .collect()
    }

    #[test]
    fn slow_subscribers_skip_old_previews_but_never_events() {
        let p = |n: u8| Item::Preview(vec![n].into());
        let items = vec![
            Item::Text("queued".into()),
            p(1),
            p(2),
            p(3),
            p(4),
            Item::Text("done".into()),
            Item::Final(vec![].into()),
        ];
        assert_eq!(
            names(&select(&items, 0, 10, false)),
            ["queued", "p1", "p2", "p3", "p4", "done", "final"]
        );
        assert_eq!(
            names(&select(&items, 0, 1, false)),
            ["queued", "p3", "p4", "done", "final"]
        );
        assert_eq!(
            names(&select(&items, 0, 0, true)),
            ["queued", "p4", "done", "final"]
        );
        assert_eq!(
            names(&select(&items, 3, 10, false)),
            ["p3", "p4", "done", "final"]
        );
        assert!(select(&items, 99, 10, false).is_empty());
    }
}
