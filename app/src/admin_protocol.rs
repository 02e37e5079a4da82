//! The admin API's messages, shared by the server (which writes them) and the browser (which reads
//! them), like `demo_protocol`: the job spec and its validation (`spec`), a job's view, the events of running jobs (the admin websocket
//! `/api/admin/events` and the remote API's per-job feed), the system panel, the launch form's
//! presets, and what a training job's sample grid shows.

use serde::{Deserialize, Serialize};

pub mod spec;

/// One invalid field of a request (a 422 answer lists them all; forms show each beside its field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field's name, with an index for list items (`m[2]`).
    pub field: String,
    pub message: String,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
    /// It was running when the server stopped; resume continues from its last checkpoint.
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    /// No more work will happen without a resume.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// States a resume applies to.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            Self::Paused | Self::Interrupted | Self::Failed | Self::Cancelled
        )
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| format!("unknown job state `{s}`"))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct JobProgress {
    pub done: u64,
    pub total: u64,
    /// What is counted: step, img, pair, inquiries.
    pub unit: String,
    /// done / total (0 before the first report).
    pub fraction: f64,
    /// Units per second since the job last started.
    pub rate: Option<f64>,
    /// Seconds left at that rate (running jobs only).
    pub eta_seconds: Option<f64>,
}

impl JobProgress {
    /// The progress a report of `done` of `total` at `rate` describes (fraction and, for a running
    /// job, the time left).
    pub fn from_report(done: u64, total: u64, unit: &str, rate: Option<f64>, running: bool) -> Self {
        let fraction = if total > 0 {
            done as f64 / total as f64
        } else {
            0.0
        };
        let eta_seconds = rate
            .filter(|r| *r > 0.0 && running)
            .map(|r| total.saturating_sub(done) as f64 / r);
        Self {
            done,
            total,
            unit: unit.to_owned(),
            fraction,
            rate,
            eta_seconds,
        }
    }
}

/// One shard of a job run as a Slurm array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmTaskView {
    pub shard: u32,
    /// `<array job id>_<task index>` of its current attempt.
    pub slurm_id: String,
    /// 0 for the first submission, then one more per retry.
    pub attempt: u32,
    /// pending, running, done or failed (with Slurm's state, e.g. `failed (CANCELLED)`).
    pub state: String,
}

/// A job as the admin pages and the remote API show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: i64,
    /// train-diffusion, generate, train-fr or eval.
    pub kind: String,
    pub state: JobState,
    pub owner: String,
    pub device: String,
    /// Place in the queue (0: next), for queued jobs.
    pub queue_position: Option<usize>,
    pub progress: JobProgress,
    pub error: Option<String>,
    /// What the job does until its next progress report (writing a checkpoint, …).
    pub phase: Option<String>,
    /// The job's spec as submitted (validated by the server; its fields depend on `kind`).
    pub spec: serde_json::Value,
    pub webhook_url: Option<String>,
    /// Unix seconds.
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    #[serde(default)]
    pub slurm: Vec<SlurmTaskView>,
}

impl JobView {
    /// Applies an event of this job to the view (what the admin pages do between fetches);
    /// false when the event needs a fresh view (a new artifact, another job).
    pub fn apply(&mut self, e: &JobEvent) -> bool {
        if e.job() != self.id {
            return false;
        }
        match e {
            JobEvent::State { state, error, .. } => {
                self.state = *state;
                self.error = error.clone();
                if *state != JobState::Running {
                    self.phase = None;
                    self.progress.eta_seconds = None;
                }
                true
            }
            JobEvent::Progress {
                done,
                total,
                unit,
                rate,
                ..
            } => {
                self.progress =
                    JobProgress::from_report(*done, *total, unit, *rate, self.state == JobState::Running);
                self.phase = None;
                true
            }
            JobEvent::Phase { phase, .. } => {
                self.phase = Some(phase.clone());
                true
            }
            JobEvent::Log { .. } => true,
            JobEvent::Artifact { .. } => false,
        }
    }
}

/// A file a job produced (checkpoint, sample grid, data set, report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactView {
    pub kind: String,
    /// Relative to the job's folder (`GET /api/admin/jobs/{id}/files/{path}`).
    pub path: String,
    pub step: Option<u64>,
    pub bytes: u64,
    pub created_at: f64,
}

/// A line of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Unix seconds.
    pub at: f64,
    pub line: String,
}

/// `GET /api/admin/jobs/{id}`: the view plus the job's artifacts and newest log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    pub artifacts: Vec<ArtifactView>,
    pub logs: Vec<LogLine>,
}

/// A change to a job, as the event websockets send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobEvent {
    State {
        id: i64,
        state: JobState,
        error: Option<String>,
    },
    Progress {
        id: i64,
        done: u64,
        total: u64,
        unit: String,
        rate: Option<f64>,
    },
    Artifact {
        id: i64,
        kind: String,
        path: String,
        step: Option<u64>,
    },
    Log {
        id: i64,
        line: String,
    },
    /// What the job does until its next progress report.
    Phase {
        id: i64,
        phase: String,
    },
}

impl JobEvent {
    pub fn job(&self) -> i64 {
        match self {
            Self::State { id, .. }
            | Self::Progress { id, .. }
            | Self::Artifact { id, .. }
            | Self::Log { id, .. }
            | Self::Phase { id, .. } => *id,
        }
    }
}

/// Memory of the machine and of the server process, in bytes (None where unknown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Memory {
    pub total: Option<u64>,
    pub available: Option<u64>,
    pub server_rss: Option<u64>,
}

/// Jobs per state, and the runner's slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QueueCounts {
    pub queued: u64,
    pub running: u64,
    pub paused: u64,
    pub interrupted: u64,
    pub slots: usize,
}

/// `GET /api/admin/system`: the admin page's system panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SystemStatus {
    pub device: String,
    pub cuda_compiled: bool,
    pub cpu_threads: usize,
    pub memory: Memory,
    pub queue: QueueCounts,
    /// The demo's generator checkpoint, if one is loaded.
    pub demo_generator: Option<String>,
    /// Unix seconds on the server.
    pub time: f64,
}

/// `GET /api/admin/presets`: the config presets a training job may name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Presets {
    #[serde(rename = "train-diffusion")]
    pub train_diffusion: Vec<String>,
    #[serde(rename = "train-fr")]
    pub train_fr: Vec<String>,
}

/// `POST /api/admin/login` and `GET /api/admin/session`: the session's CSRF token (every write
/// sends it as `X-CSRF-Token`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub csrf: String,
}

/// `GET /api/admin/jobs/{id}/metrics`: each recorded metric's (step, value) points, at most 1000
/// per metric (evenly thinned).
pub type Metrics = std::collections::BTreeMap<String, Vec<(u64, f64)>>;

/// An API key as the panel lists it (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: i64,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// `generate` and/or `read`.
    pub scopes: Vec<String>,
    pub rate_per_minute: u32,
    pub quota_images: u64,
    /// Jobs the key may have queued, running, paused or interrupted at once.
    pub max_active_jobs: u32,
    /// Identities one of its jobs may ask for.
    pub max_identities: u64,
    pub created_at: f64,
    pub revoked_at: Option<f64>,
}

/// `POST /api/admin/keys`: the new key, with the key and its webhook secret (shown this once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    pub key: String,
    pub webhook_secret: String,
}

/// The similarity targets of a training job's sample grid, one column each after the inquiry
/// column; its rows are held-out DCGAN identities (the same at every checkpoint).
pub const SAMPLE_GRID_M: [f32; 3] = [-1.0, 0.0, 1.0];

/// Column labels of a training sample grid, left to right.
pub fn sample_grid_columns() -> Vec<String> {
    std::iter::once("inquiry".to_owned())
        .chain(SAMPLE_GRID_M.iter().map(|m| format!("m = {m:+.0}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_label_per_column() {
        assert_eq!(sample_grid_columns(), ["inquiry", "m = -1", "m = +0", "m = +1"]);
    }

    #[test]
    fn events_round_trip_and_update_a_view() {
        let e = JobEvent::Progress {
            id: 7,
            done: 3,
            total: 12,
            unit: "step".into(),
            rate: Some(1.5),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.starts_with(r#"{"type":"progress","id":7"#), "{text}");
        assert_eq!(serde_json::from_str::<JobEvent>(&text).unwrap(), e);
        let mut v: JobView = serde_json::from_value(serde_json::json!({
            "id": 7, "kind": "train-diffusion", "state": "running", "owner": "admin", "device": "cpu",
            "queue_position": null, "progress": {"done": 0, "total": 12, "unit": "step", "fraction": 0.0,
            "rate": null, "eta_seconds": null}, "error": null, "phase": "writing a checkpoint",
            "spec": {"kind": "train-diffusion"}, "webhook_url": null, "created_at": 1.0,
            "started_at": 2.0, "finished_at": null
        }))
        .unwrap();
        assert!(v.apply(&e));
        assert_eq!(
            (v.progress.done, v.progress.fraction, v.progress.eta_seconds),
            (3, 0.25, Some(6.0))
        );
        assert_eq!(v.phase, None, "a progress report ends the phase");
        assert!(
            !v.apply(&JobEvent::Log {
                id: 8,
                line: "x".into()
            }),
            "another job's event"
        );
        assert!(!v.apply(&JobEvent::Artifact {
            id: 7,
            kind: "checkpoint".into(),
            path: "p".into(),
            step: None
        }));
        assert!(v.apply(&JobEvent::State {
            id: 7,
            state: JobState::Succeeded,
            error: None
        }));
        assert_eq!((v.state, v.progress.eta_seconds), (JobState::Succeeded, None));
        let s: Presets =
            serde_json::from_str(r#"{"train-diffusion":["tiny-32"],"train-fr":["fr-tiny"]}"#).unwrap();
        assert_eq!(s.train_diffusion, ["tiny-32"]);
    }
}
