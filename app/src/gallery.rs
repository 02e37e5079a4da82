//! The demo gallery: this visitor's finished results, kept in the browser's `localStorage` across
//! reloads (never on the server), each downloadable as the PNG the server sent — its settings are
//! in its `parameters` text chunk — or all at once as a ZIP.

use serde::{Deserialize, Serialize};

use crate::demo_protocol::JobRequest;

/// Results kept across reloads (newest first); older ones drop off. 64-px PNGs are 5–15 KB.
pub const MAX_KEPT: usize = 24;
/// The `localStorage` key (versioned: a format change starts an empty gallery).
pub const STORAGE_KEY: &str = "cemiface.gallery.v1";

/// A finished image of this visitor, with what made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// When it finished (ms since the epoch): its key and its file name.
    pub id: u64,
    /// Object URL of `png` (revoke when the shot is dropped).
    pub url: String,
    pub png: Vec<u8>,
    pub request: JobRequest,
    pub similarity: Vec<f32>,
}

/// What `localStorage` holds per shot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    id: u64,
    png_base64: String,
    request: JobRequest,
    similarity: Vec<f32>,
}

impl Shot {
    /// The download's file name: settings a file browser can sort by.
    pub fn file_name(&self) -> String {
        let what = if self.request.sweep {
            "sweep".to_owned()
        } else {
            format!("m{:+.2}", self.request.m)
        };
        format!(
            "cemiface-{what}-seed{}-{}steps-{}.png",
            self.request.seed, self.request.steps, self.id
        )
    }
}

/// The gallery as `localStorage` text (at most `MAX_KEPT`, newest first).
pub fn to_json(shots: &[Shot]) -> String {
    use base64::Engine;
    let stored: Vec<Stored> = shots
        .iter()
        .take(MAX_KEPT)
        .map(|s| Stored {
            id: s.id,
            png_base64: base64::engine::general_purpose::STANDARD.encode(&s.png),
            request: s.request.clone(),
            similarity: s.similarity.clone(),
        })
        .collect();
    serde_json::to_string(&stored).expect("plain data")
}

/// Shots read back from `to_json` text, without URLs (the caller makes them); unreadable text
/// or entries are skipped, never an error: a broken store is an empty gallery.
pub fn from_json(text: &str) -> Vec<Shot> {
    use base64::Engine;
    let stored: Vec<Stored> = serde_json::from_str(text).unwrap_or_default();
    stored
        .into_iter()
        .filter_map(|s| {
            let png = base64::engine::general_purpose::STANDARD
                .decode(&s.png_base64)
                .ok()?;
            Some(Shot {
                id: s.id,
                url: String::new(),
                png,
                request: s.request,
                similarity: s.similarity,
            })
        })
        .take(MAX_KEPT)
        .collect()
}

/// All shots as one ZIP (stored), named by `file_name`.
pub fn zip_all(shots: &[Shot]) -> Vec<u8> {
    let names: Vec<String> = shots.iter().map(Shot::file_name).collect();
    let entries: Vec<crate::zip_store::Entry> = shots
        .iter()
        .zip(&names)
        .map(|(s, n)| crate::zip_store::Entry {
            name: n,
            bytes: &s.png,
        })
        .collect();
    crate::zip_store::write(&entries)
}

/// Browser side: `localStorage` and downloads (called from effects and event handlers only).
pub mod browser {
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;

    use super::*;

    fn storage() -> Option<web_sys::Storage> {
        window().local_storage().ok().flatten()
    }

    /// The kept shots, each with a fresh object URL.
    pub fn load() -> Vec<Shot> {
        let text = storage()
            .and_then(|s| s.get_item(STORAGE_KEY).ok().flatten())
            .unwrap_or_default();
        from_json(&text)
            .into_iter()
            .filter_map(|mut s| {
                s.url = crate::demo_client::object_url(&s.png, "image/png")?;
                Some(s)
            })
            .collect()
    }

    /// Saves the gallery; when the browser's quota is full, keeps as many of the newest as fit.
    pub fn save(shots: &[Shot]) {
        let Some(st) = storage() else { return };
        let mut n = shots.len().min(MAX_KEPT);
        loop {
            if st.set_item(STORAGE_KEY, &to_json(&shots[..n])).is_ok() || n == 0 {
                return;
            }
            n /= 2;
        }
    }

    /// Starts a download of `bytes` as `name`.
    pub fn download(bytes: &[u8], mime: &str, name: &str) {
        let Some(url) = crate::demo_client::object_url(bytes, mime) else {
            return;
        };
        if let Ok(a) = document().create_element("a") {
            let _ = a.set_attribute("href", &url);
            let _ = a.set_attribute("download", name);
            if let Ok(a) = a.dyn_into::<web_sys::HtmlElement>() {
                a.click();
            }
        }
        let u = url.clone();
        set_timeout(
            move || crate::demo_client::revoke(&u),
            std::time::Duration::from_secs(10),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shot(id: u64, sweep: bool) -> Shot {
        Shot {
            id,
            url: format!("blob:{id}"),
            png: vec![id as u8; 40],
            request: JobRequest {
                upload_id: "u".into(),
                m: -0.35,
                steps: 20,
                seed: 7,
                eta: 1.0,
                sweep,
            },
            similarity: vec![0.1],
        }
    }

    #[test]
    fn storage_round_trips_without_urls_and_keeps_the_newest() {
        let shots: Vec<Shot> = (0..30).map(|i| shot(i, i % 2 == 0)).collect();
        let back = from_json(&to_json(&shots));
        assert_eq!(back.len(), MAX_KEPT);
        assert_eq!(back[3].png, shots[3].png);
        assert_eq!(back[3].request, shots[3].request);
        assert!(back[3].url.is_empty());
    }

    #[test]
    fn broken_storage_is_an_empty_gallery() {
        assert!(from_json("not json").is_empty());
        assert!(from_json("").is_empty());
        assert_eq!(from_json(r#"[{"id":1,"png_base64":"!!","request":{"upload_id":"","m":0,"steps":1,"seed":0,"eta":0},"similarity":[]}]"#).len(), 0);
    }

    #[test]
    fn file_names_say_the_settings_and_are_unique() {
        assert_eq!(shot(5, false).file_name(), "cemiface-m-0.35-seed7-20steps-5.png");
        assert_eq!(shot(6, true).file_name(), "cemiface-sweep-seed7-20steps-6.png");
        let zip = zip_all(&[shot(1, false), shot(2, true)]);
        assert_eq!(
            u16::from_le_bytes([zip[zip.len() - 12], zip[zip.len() - 11]]),
            2,
            "two entries"
        );
    }
}
