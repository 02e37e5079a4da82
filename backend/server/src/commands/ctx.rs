//! What a command sees of whoever runs it: a sink for everything it reports (progress, logs,
//! metrics, artifacts, results) and a stop request checked once per step. The CLI runs commands
//! with a sink that draws on the terminal (`cli::console`); the job runner with one that writes to
//! the job store and the admin page's event stream, and can pause or cancel. Commands never print.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Something a running command reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// `done` of `total` units (steps, images, pairs) are finished.
    Progress {
        done: u64,
        total: u64,
        unit: &'static str,
    },
    /// Scalars of one training step (loss terms, learning rate, throughput, similarity).
    Metrics {
        step: u64,
        values: Vec<(&'static str, f64)>,
    },
    /// A file or folder the command produced (checkpoint, sample grid, data set, report).
    Artifact {
        kind: &'static str,
        path: PathBuf,
        step: Option<u64>,
    },
    /// A human-readable log line (the terminal's stderr, the job's log).
    Log(String),
    /// The command's result as text (a table, JSON, a script): the terminal's stdout, the job's log.
    Output(String),
    /// Progress of the unit in flight below the main progress (the DDIM steps of the batch being
    /// generated); a terminal draws it as a second bar, the job runner ignores it.
    Detail {
        done: u64,
        total: u64,
        unit: &'static str,
    },
    /// What the command is doing between progress reports (writing a checkpoint, drawing the
    /// sample grid, merging shards); the next progress report ends it.
    Phase(&'static str),
}

/// Why a command stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stopped at a step boundary; nothing is kept beyond the last checkpoint.
    Cancelled,
    /// A checkpoint was written first; resuming continues from it.
    Paused,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::Cancelled => "cancelled",
            Stop::Paused => "paused",
        })
    }
}

impl std::error::Error for Stop {}

const RUN: u8 = 0;
const PAUSE: u8 = 1;
const CANCEL: u8 = 2;

/// The shared stop switch of one running job.
#[derive(Debug, Clone, Default)]
pub struct StopSwitch(Arc<AtomicU8>);

impl StopSwitch {
    pub fn request(&self, stop: Stop) {
        let v = match stop {
            Stop::Paused => PAUSE,
            Stop::Cancelled => CANCEL,
        };
        // A cancel overrides a pending pause, never the other way round.
        self.0.fetch_max(v, Ordering::SeqCst);
    }

    pub fn requested(&self) -> Option<Stop> {
        match self.0.load(Ordering::SeqCst) {
            RUN => None,
            PAUSE => Some(Stop::Paused),
            _ => Some(Stop::Cancelled),
        }
    }
}

type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// The context a command runs in.
#[derive(Clone)]
pub struct JobCtx {
    pub stop: StopSwitch,
    sink: Sink,
}

impl JobCtx {
    /// A context reporting to `sink`, stopped through `stop`.
    pub fn new(stop: StopSwitch, sink: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Self {
            stop,
            sink: Arc::new(sink),
        }
    }

    pub fn emit(&self, e: Event) {
        (self.sink)(e);
    }

    pub fn log(&self, line: impl Into<String>) {
        self.emit(Event::Log(line.into()));
    }

    /// The command's result text (see [`out!`](crate::out)).
    pub fn output(&self, text: impl Into<String>) {
        self.emit(Event::Output(text.into()));
    }

    pub fn progress(&self, done: u64, total: u64, unit: &'static str) {
        self.emit(Event::Progress { done, total, unit });
    }

    /// Progress inside the current unit (see [`Event::Detail`]).
    pub fn detail(&self, done: u64, total: u64, unit: &'static str) {
        self.emit(Event::Detail { done, total, unit });
    }

    /// Says what runs until the next progress report (shown beside the job's progress).
    pub fn phase(&self, what: &'static str) {
        self.emit(Event::Phase(what));
    }

    pub fn metrics(&self, step: u64, values: Vec<(&'static str, f64)>) {
        self.emit(Event::Metrics { step, values });
    }

    pub fn artifact(&self, kind: &'static str, path: &Path, step: Option<u64>) {
        self.emit(Event::Artifact {
            kind,
            path: path.to_owned(),
            step,
        });
    }

    /// The stop requested, if any (checked once per step).
    pub fn requested(&self) -> Option<Stop> {
        self.stop.requested()
    }

    /// A training loop's step boundary: Ok(()) to go on, or the stop as an error. A pause first
    /// writes a checkpoint with `save` (unless no step ran since `first`, the resumed step, which
    /// has one already).
    pub fn stop_point(
        &self,
        step: u64,
        first: u64,
        save: impl FnOnce() -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<()> {
        let Some(stop) = self.requested() else {
            return Ok(());
        };
        if stop == Stop::Paused && step > first {
            let dir = save()?;
            self.log(format!("paused: checkpoint {}", dir.display()));
            self.artifact("checkpoint", &dir, Some(step));
        }
        Err(stop.into())
    }
}

/// A result line of a command: `out!(ctx, "format", args…)` is `ctx.output(format!(…))`.
#[macro_export]
macro_rules! out {
    ($ctx:expr) => {
        $ctx.output(String::new())
    };
    ($ctx:expr, $($arg:tt)+) => {
        $ctx.output(format!($($arg)+))
    };
}

/// A log line of a command: `say!(ctx, "format", args…)` is `ctx.log(format!(…))`.
#[macro_export]
macro_rules! say {
    ($ctx:expr, $($arg:tt)+) => {
        $ctx.log(format!($($arg)+))
    };
}

/// Whether an error is a requested stop (and which).
pub fn stopped(e: &anyhow::Error) -> Option<Stop> {
    e.downcast_ref::<Stop>().copied()
}
