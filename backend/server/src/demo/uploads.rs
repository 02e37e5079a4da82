//! Uploaded faces, in memory only: the aligned crop and its embedding (the original photo is
//! dropped once aligned and nothing is written to disk). Each belongs to one client, expires after a
//! while unused, and its owner can delete it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::model::PreparedFace;
use super::DemoError;

/// Most faces one client keeps at once; the oldest goes first.
pub const PER_CLIENT: usize = 4;

struct Entry {
    owner: String,
    face: Arc<PreparedFace>,
    last_used: Instant,
}

/// The store.
pub struct Uploads {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
}

impl Uploads {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// Keeps `face` for `owner`; returns its id.
    /// Forgets every upload (the demo's model changed).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn insert(&self, owner: &str, face: PreparedFace) -> String {
        let id = format!("u{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, e| now - e.last_used < self.ttl);
        let mut mine: Vec<(Instant, String)> = map
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(k, e)| (e.last_used, k.clone()))
            .collect();
        mine.sort();
        for (_, k) in mine.iter().take((mine.len() + 1).saturating_sub(PER_CLIENT)) {
            map.remove(k);
        }
        map.insert(
            id.clone(),
            Entry {
                owner: owner.into(),
                face: Arc::new(face),
                last_used: now,
            },
        );
        id
    }

    /// The face `id` of `owner` (refreshing its expiry).
    pub fn get(&self, owner: &str, id: &str) -> Result<Arc<PreparedFace>, DemoError> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get_mut(id) {
            Some(e) if e.owner == owner && now - e.last_used < self.ttl => {
                e.last_used = now;
                Ok(e.face.clone())
            }
            _ => Err(DemoError::not_found(format!(
                "upload {} is not (or no longer) here: uploads are kept {} minutes after their last \
                 use; upload the photo again",
                super::ws::clip(id, 40),
                self.ttl.as_secs() / 60
            ))),
        }
    }

    /// Deletes the face `id` of `owner`.
    pub fn remove(&self, owner: &str, id: &str) -> Result<(), DemoError> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(e) if e.owner == owner => {
                map.remove(id);
                Ok(())
            }
            _ => Err(DemoError::not_found(format!(
                "no upload {} of yours",
                super::ws::clip(id, 40)
            ))),
        }
    }
}
