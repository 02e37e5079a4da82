//! Progress lines for long CLI work: a bar, throughput and ETA, redrawn in place on a terminal and
//! printed every few seconds otherwise (logs of cluster jobs stay readable).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub use cemiface_app::units::eta;

/// A progress line over `total` units.
pub struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub fn new(label: impl Into<String>, unit: &'static str, total: u64) -> Self {
        Self {
            label: label.into(),
            unit,
            total,
            done: 0,
            started: Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Adds `n` finished units and redraws.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        let due = self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if self.tty || due || self.done == self.total {
            self.last = Some(Instant::now());
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let frac = self.done as f64 / self.total.max(1) as f64;
            let filled = (frac * 24.0).round() as usize;
            let line = format!(
                "{} [{}{}] {}/{} {} | {:.2} {}/s | ETA {}",
                self.label,
                "#".repeat(filled),
                "-".repeat(24 - filled.min(24)),
                self.done,
                self.total,
                self.unit,
                rate,
                self.unit,
                eta((self.total - self.done.min(self.total)) as f64 / rate)
            );
            if self.tty {
                eprint!("\r{line}   ");
                if self.done >= self.total {
                    eprintln!();
                }
            } else {
                eprintln!("{line}");
            }
        }
    }
}
