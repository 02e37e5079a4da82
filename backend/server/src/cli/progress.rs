//! Progress for long CLI work. On a terminal: `indicatif` bars with throughput and ETA (a second
//! bar below for the unit in flight, e.g. the DDIM steps of the current batch). Otherwise (CI logs,
//! cluster job logs): one plain line every 10 s and at the end, so logs stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use cemiface_app::units::eta;

/// A progress display over `total` units.
pub struct Progress {
    out: Output,
    label: String,
    unit: &'static str,
    total: u64,
    done: u64,
    /// Units finished before this process started (a resumed run): counted, not in the rate.
    resumed_at: u64,
    started: Instant,
}

enum Output {
    Bars { multi: MultiProgress, bar: ProgressBar },
    Lines { last: Option<Instant> },
}

impl Progress {
    /// A bar on a terminal (stderr), plain lines otherwise.
    pub fn new(label: impl Into<String>, unit: &'static str, total: u64) -> Self {
        Self::with_terminal(label, unit, total, std::io::stderr().is_terminal())
    }

    fn with_terminal(label: impl Into<String>, unit: &'static str, total: u64, tty: bool) -> Self {
        let label = label.into();
        let out = if tty {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let bar = multi.add(
                ProgressBar::new(total)
                    .with_style(style(unit))
                    .with_prefix(label.clone()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            Output::Bars { multi, bar }
        } else {
            Output::Lines { last: None }
        };
        Self {
            out,
            label,
            unit,
            total,
            done: 0,
            resumed_at: 0,
            started: Instant::now(),
        }
    }

    /// The same display for a resumed run that had `done` units finished already.
    pub fn resumed(mut self, done: u64) -> Self {
        self.done = done;
        self.resumed_at = done;
        if let Output::Bars { bar, .. } = &self.out {
            bar.set_position(done);
            bar.reset_eta();
        }
        self
    }

    /// Adds `n` finished units and redraws (a plain line at most every 10 s, and at the end).
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &mut self.out {
            Output::Bars { bar, .. } => {
                bar.inc(n);
                if self.done >= self.total {
                    bar.finish();
                }
            }
            Output::Lines { last } => {
                let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
                if due || self.done >= self.total {
                    *last = Some(Instant::now());
                    eprintln!("{}", self.line());
                }
            }
        }
    }

    /// Moves to `done` finished units (never backwards).
    pub fn set_position(&mut self, done: u64) {
        self.advance(done.saturating_sub(self.done));
    }

    /// Prints a line above the bars (or on its own line in a log).
    pub fn println(&self, line: &str) {
        match &self.out {
            Output::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Output::Lines { .. } => eprintln!("{line}"),
        }
    }

    /// A second bar below this one (terminal only; nothing otherwise), e.g. the steps of one batch.
    pub fn sub(&self, label: impl Into<String>, unit: &'static str, total: u64) -> Option<ProgressBar> {
        match &self.out {
            Output::Bars { multi, .. } => {
                let b = multi.add(
                    ProgressBar::new(total)
                        .with_style(style(unit))
                        .with_prefix(label.into()),
                );
                Some(b)
            }
            Output::Lines { .. } => None,
        }
    }

    /// The plain-text line: `label [####----] done/total unit | rate unit/s | ETA …`.
    pub fn line(&self) -> String {
        let rate = (self.done - self.resumed_at) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let frac = self.done as f64 / self.total.max(1) as f64;
        let filled = ((frac * 24.0).round() as usize).min(24);
        format!(
            "{} [{}{}] {}/{} {} | {:.2} {}/s | ETA {}",
            self.label,
            "#".repeat(filled),
            "-".repeat(24 - filled),
            self.done,
            self.total,
            self.unit,
            rate,
            self.unit,
            eta((self.total - self.done.min(self.total)) as f64 / rate)
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Output::Bars { bar, .. } = &self.out {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

fn style(unit: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix}} [{{bar:24.cyan/blue}}] {{pos}}/{{len}} {unit} | {{per_sec}} | ETA {{eta}}"
    ))
    .expect("a valid template")
    .progress_chars("#>-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_report_counts_and_eta() {
        let mut p = Progress::with_terminal("generating", "img", 4, false);
        assert!(
            p.sub("identity 0", "step", 20).is_none(),
            "no second bar in a log"
        );
        p.advance(1);
        let l = p.line();
        assert!(
            l.starts_with("generating [######------------------] 1/4 img | "),
            "{l}"
        );
        assert!(l.contains(" img/s | ETA "), "{l}");
        p.advance(3);
        assert!(
            p.line().contains("[########################] 4/4 img"),
            "{}",
            p.line()
        );
        // A resumed run counts what was done before it, but not into its rate.
        let p = Progress::with_terminal("generating", "img", 80, false).resumed(32);
        let l = p.line();
        assert!(l.contains(" 32/80 img | 0.00 img/s"), "{l}");
    }

    #[test]
    fn bars_count_on_a_terminal() {
        let mut p = Progress::with_terminal("train", "step", 10, true);
        let sub = p.sub("batch", "step", 20).expect("a second bar on a terminal");
        sub.inc(5);
        assert_eq!(sub.position(), 5);
        p.advance(10);
        match &p.out {
            Output::Bars { bar, .. } => assert!(bar.is_finished() && bar.position() == 10),
            Output::Lines { .. } => panic!("a terminal gets bars"),
        }
    }
}
