//! The live demo's websocket protocol, shared by the server and the browser.
//!
//! One socket per page (`GET /api/demo/ws`). The client sends JSON text messages
//! ([`ClientMessage`]); the server answers with JSON text events ([`ServerEvent`]) for state and
//! with binary frames for pixels, framed like ComfyUI's `PREVIEW_IMAGE_WITH_METADATA`:
//!
//! ```text
//! [u32 big-endian kind][u32 big-endian meta_len][meta_len bytes of FrameMeta JSON][PNG bytes]
//! ```
//!
//! `kind` is [`FRAME_PREVIEW`] (the x̂0 estimate after one DDIM step) or [`FRAME_FINAL`] (the
//! finished image). State events are never dropped; when a socket is slow the server skips older
//! preview frames and sends the newest.

use serde::{Deserialize, Serialize};

/// Binary frame kind: x̂0 after a DDIM step.
pub const FRAME_PREVIEW: u32 = 1;
/// Binary frame kind: the finished image.
pub const FRAME_FINAL: u32 = 2;

/// Largest seed the demo accepts: JavaScript numbers are exact up to 2^53 − 1.
pub const MAX_SEED: u64 = (1 << 53) - 1;
/// Step range of the demo's DDIM sampler.
pub const MAX_STEPS: u32 = 100;
/// The targets of an m-sweep, left to right.
pub const SWEEP_M: [f32; 5] = [-1.0, -0.5, 0.0, 0.5, 1.0];

/// What the browser sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Sample the uploaded face at similarity `m` (or at [`SWEEP_M`] side by side when `sweep`).
    Submit(JobRequest),
    /// Stop a queued or running job of this client.
    Cancel { job_id: u64 },
    /// Resume the events of a job after a reconnect: the server replays its state events and the
    /// last preview frame, then streams the rest.
    Subscribe { job_id: u64 },
}

/// The parameters of one demo job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Id returned by `POST /api/demo/upload`.
    pub upload_id: String,
    /// Similarity target in [−1, 1] (ignored by a sweep).
    pub m: f32,
    /// DDIM steps, 1..=[`MAX_STEPS`].
    pub steps: u32,
    /// Noise seed, 0..=[`MAX_SEED`]: the same seed and parameters give the same image.
    pub seed: u64,
    /// DDIM stochasticity η in [0, 1].
    pub eta: f32,
    /// Render m = −1, −0.5, 0, 0.5, 1 side by side with the same seed.
    #[serde(default)]
    pub sweep: bool,
}

impl JobRequest {
    /// Checks every range; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.m.is_finite() || !(-1.0..=1.0).contains(&self.m) {
            return Err(format!("m must be in [-1, 1], got {}", self.m));
        }
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(format!("steps must be in 1..={MAX_STEPS}, got {}", self.steps));
        }
        if self.seed > MAX_SEED {
            return Err(format!("seed must be in 0..={MAX_SEED}, got {}", self.seed));
        }
        if !self.eta.is_finite() || !(0.0..=1.0).contains(&self.eta) {
            return Err(format!("eta must be in [0, 1], got {}", self.eta));
        }
        if self.upload_id.is_empty() {
            return Err("upload_id is empty: upload a photo first".into());
        }
        if self.upload_id.len() > 64 {
            return Err(format!(
                "upload_id has {} characters; ids have at most 64",
                self.upload_id.len()
            ));
        }
        Ok(())
    }

    /// The targets of the images this job renders, left to right.
    pub fn targets(&self) -> Vec<f32> {
        if self.sweep {
            SWEEP_M.to_vec()
        } else {
            vec![self.m]
        }
    }
}

/// The installed generator, as the page describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Side of the generated images.
    pub image_size: u32,
    /// The identity network (E_id) the generator was trained with.
    pub encoder: String,
    /// Training steps of the checkpoint.
    pub step: u64,
    /// Where it was loaded from.
    pub checkpoint: String,
}

/// The answer to `POST /api/demo/upload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadReply {
    pub upload_id: String,
    /// Where the aligned crop can be fetched (by this client only).
    pub crop_url: String,
    /// Faces the detector found; the largest is used.
    pub faces_found: usize,
    /// Something the page should say, e.g. that the largest of several faces is used.
    pub note: Option<String>,
}

/// Limits the server enforces, so the page can say them up front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoLimits {
    pub max_upload_bytes: u64,
    pub max_pixels: u64,
    pub max_queue: usize,
    pub jobs_per_minute: u32,
}

/// JSON text events from the server. Every job event carries the job id and a per-job `seq`
/// (1, 2, …) shared with the binary frames, so a reconnecting client can drop what it has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First message on every socket: the model (or why there is none) and the limits.
    Hello {
        model: Option<ModelInfo>,
        /// Set when no generator is installed: what to do about it.
        no_model: Option<String>,
        limits: DemoLimits,
    },
    /// The job was accepted and waits at `position` (1 = next) of `queue_size` waiting jobs.
    Queued {
        job_id: u64,
        seq: u64,
        position: usize,
        queue_size: usize,
    },
    /// A worker took the job.
    Started {
        job_id: u64,
        seq: u64,
        request: JobRequest,
    },
    /// The job finished; the final image follows as a [`FRAME_FINAL`] frame.
    Done {
        job_id: u64,
        seq: u64,
        similarity: Vec<f32>,
        timings: Timings,
    },
    /// Stopped by its owner after `steps_done` steps.
    Cancelled { job_id: u64, seq: u64, steps_done: u32 },
    /// A typed error; `job_id` is absent when the message was not about a job.
    Error {
        job_id: Option<u64>,
        code: String,
        message: String,
    },
    /// Sent every few seconds so the page knows the connection is alive.
    Heartbeat { server_time_ms: u64 },
}

/// Where the time of a job went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub queued_ms: u64,
    pub sampling_ms: u64,
    pub per_step_ms: f64,
}

/// Metadata of a binary frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameMeta {
    pub job_id: u64,
    pub seq: u64,
    /// Steps done (1-based); equals `steps` for the final image.
    pub step: u32,
    pub steps: u32,
    /// The timestep just denoised (0 for the final image).
    pub t: u32,
    /// Targets of the images, left to right.
    pub m: Vec<f32>,
    /// Cosine similarity of each image to the uploaded face under E_id.
    pub similarity: Vec<f32>,
    /// Milliseconds since the job started, and the estimated milliseconds left.
    pub elapsed_ms: u64,
    pub eta_ms: u64,
    pub mime: String,
    pub width: u32,
    pub height: u32,
}

/// A binary frame: kind, metadata, image bytes.
pub fn encode_frame(kind: u32, meta: &FrameMeta, image: &[u8]) -> Vec<u8> {
    let meta = serde_json::to_vec(meta).expect("frame metadata serialises");
    let mut out = Vec::with_capacity(8 + meta.len() + image.len());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(image);
    out
}

/// Splits a binary frame into kind, metadata and image bytes.
pub fn decode_frame(bytes: &[u8]) -> Result<(u32, FrameMeta, &[u8]), String> {
    if bytes.len() < 8 {
        return Err(format!(
            "frame of {} bytes is shorter than its 8-byte header",
            bytes.len()
        ));
    }
    let kind = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let end = 8usize
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "frame metadata length {len} runs past the frame's {} bytes",
                bytes.len()
            )
        })?;
    let meta: FrameMeta =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| format!("frame metadata: {e}"))?;
    Ok((kind, meta, &bytes[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> FrameMeta {
        FrameMeta {
            job_id: 7,
            seq: 3,
            step: 2,
            steps: 5,
            t: 600,
            m: vec![0.0],
            similarity: vec![0.25],
            elapsed_ms: 40,
            eta_ms: 60,
            mime: "image/png".into(),
            width: 64,
            height: 64,
        }
    }

    #[test]
    fn frames_round_trip_with_a_big_endian_header() {
        let f = encode_frame(FRAME_PREVIEW, &meta(), b"\x89PNG");
        assert_eq!(&f[0..4], &[0, 0, 0, 1]);
        let len = u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize;
        assert_eq!(f.len(), 8 + len + 4);
        let (kind, m, img) = decode_frame(&f).unwrap();
        assert_eq!((kind, m, img), (FRAME_PREVIEW, meta(), &b"\x89PNG"[..]));
        assert!(decode_frame(&f[..6]).unwrap_err().contains("shorter"));
        let mut bad = f.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_frame(&bad).unwrap_err().contains("runs past"));
    }

    #[test]
    fn requests_are_range_checked_and_unknown_fields_refused() {
        let ok = JobRequest {
            upload_id: "u".into(),
            m: 0.0,
            steps: 20,
            seed: 1,
            eta: 1.0,
            sweep: false,
        };
        assert!(ok.validate().is_ok());
        for (bad, field) in [
            (JobRequest { m: 1.5, ..ok.clone() }, "m must"),
            (
                JobRequest {
                    m: f32::NAN,
                    ..ok.clone()
                },
                "m must",
            ),
            (
                JobRequest {
                    steps: 0,
                    ..ok.clone()
                },
                "steps",
            ),
            (
                JobRequest {
                    steps: 101,
                    ..ok.clone()
                },
                "steps",
            ),
            (
                JobRequest {
                    seed: MAX_SEED + 1,
                    ..ok.clone()
                },
                "seed",
            ),
            (
                JobRequest {
                    eta: -0.1,
                    ..ok.clone()
                },
                "eta",
            ),
        ] {
            assert!(bad.validate().unwrap_err().starts_with(field), "{bad:?}");
        }
        let msg = r#"{"type":"submit","upload_id":"u","m":0,"steps":5,"seed":1,"eta":1,"extra":1}"#;
        assert!(serde_json::from_str::<ClientMessage>(msg).is_err());
        let msg = r#"{"type":"submit","upload_id":"u","m":0,"steps":5,"seed":1,"eta":1}"#;
        let parsed: ClientMessage = serde_json::from_str(msg).unwrap();
        assert_eq!(
            parsed,
            ClientMessage::Submit(JobRequest {
                steps: 5,
                eta: 1.0,
                ..ok
            })
        );
        assert_eq!(
            JobRequest {
                sweep: true,
                upload_id: "u".into(),
                m: 0.3,
                steps: 1,
                seed: 0,
                eta: 0.0
            }
            .targets(),
            SWEEP_M.to_vec()
        );
    }
}
