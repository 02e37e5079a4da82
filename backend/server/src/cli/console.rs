//! The terminal as a command's context: progress as bars (or plain lines in a log), log lines on
//! stderr above the bars, results on stdout. What the job runner stores, a terminal draws.

use std::sync::Mutex;

use crate::commands::ctx::{Event, JobCtx, StopSwitch};

use super::progress::Progress;

/// What the terminal shows of one command.
struct Screen {
    label: &'static str,
    bar: Option<Progress>,
    detail: Option<indicatif::ProgressBar>,
}

impl Screen {
    fn show(&mut self, e: Event) {
        match e {
            Event::Progress { done, total, unit } => match &mut self.bar {
                Some(bar) => bar.set_position(done),
                None => self.bar = Some(Progress::new(self.label, unit, total).resumed(done)),
            },
            Event::Detail { done, total, unit } => {
                if self.detail.is_none() {
                    self.detail = self.bar.as_ref().and_then(|b| b.sub("  batch", unit, total));
                }
                if let Some(d) = &self.detail {
                    d.set_length(total);
                    d.set_position(done);
                }
            }
            Event::Log(line) => match &self.bar {
                Some(bar) => bar.println(&line),
                None => eprintln!("{line}"),
            },
            Event::Output(text) => println!("{text}"),
            Event::Phase(_) | Event::Metrics { .. } | Event::Artifact { .. } => {}
        }
    }
}

/// The context of a command run from the terminal; `label` names its progress bar.
pub fn console(label: &'static str) -> JobCtx {
    let screen = Mutex::new(Screen {
        label,
        bar: None,
        detail: None,
    });
    JobCtx::new(StopSwitch::default(), move |e| {
        screen.lock().unwrap_or_else(|p| p.into_inner()).show(e);
    })
}
