//! The job runner: a scheduler thread starts queued jobs while the device has a free slot; each
//! job runs the same code as its CLI command on its own thread, reporting through a [`JobCtx`]
//! into the store and onto a broadcast channel (websockets, the admin page).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cemiface_engine::device::DeviceRequest;
use tokio::sync::broadcast;

use super::exec;
use super::spec::JobState;
use super::store::{JobRow, Store};
use crate::commands::ctx::{stopped, Event, JobCtx, Stop, StopSwitch};

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub data_dir: PathBuf,
    pub assets_dir: PathBuf,
    pub device: DeviceRequest,
    /// Label of the device jobs run on (one slot pool per device).
    pub device_label: String,
    /// Jobs that may run at once on the device.
    pub slots: usize,
    /// The generator `default` names (the demo's).
    pub default_generator: PathBuf,
    /// Where generation jobs run: in this process, or as Slurm arrays.
    pub executor: Executor,
}

/// Where generation jobs run (`--executor`).
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// In the server process, `--job-slots` at a time.
    #[default]
    Local,
    /// As Slurm array jobs; the server prepares, follows and merges.
    Slurm(super::slurm::SlurmSettings),
}

pub use cemiface_app::admin_protocol::JobEvent;

pub type FinalHook = Box<dyn Fn(&JobRow) + Send + Sync>;

#[derive(Default)]
struct Slots {
    running: HashMap<i64, StopSwitch>,
    shutdown: bool,
}

/// The runner (one per server).
pub struct Runner {
    pub store: Arc<Store>,
    pub settings: RunnerSettings,
    pub events: broadcast::Sender<JobEvent>,
    slots: Mutex<Slots>,
    wake: Condvar,
    /// Called with each job that reached a final state (webhooks).
    on_final: FinalHook,
    /// What each running job does between progress reports (`JobCtx::phase`); in memory only.
    phases: Mutex<HashMap<i64, &'static str>>,
}

/// A job's folder under the data folder.
pub fn job_dir(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join("jobs").join(id.to_string())
}

/// Creates a job's folder: exclusively on its first run (a folder that is already there belongs to
/// another job and is never reused), or finds it again when the job resumes.
fn create_job_dir(dir: &Path, resume: bool) -> anyhow::Result<()> {
    if resume {
        return std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()));
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    }
    std::fs::create_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists: it belongs to another job (was the job store replaced?); it is left as it is",
            dir.display()
        ),
        _ => anyhow::anyhow!("{}: {e}", dir.display()),
    })
}

impl Runner {
    /// Marks jobs a previous server left running as interrupted and starts the scheduler.
    /// `on_final` sees each job that reached a final state (the webhook sender).
    pub fn start(
        store: Arc<Store>,
        settings: RunnerSettings,
        on_final: FinalHook,
    ) -> anyhow::Result<Arc<Self>> {
        for id in store.mark_interrupted()? {
            tracing::warn!(
                job = id,
                "job was running when the server stopped: marked interrupted"
            );
        }
        if matches!(settings.executor, Executor::Slurm(_)) {
            // Their tasks ran on without the server: follow them again (nothing is resubmitted).
            for id in store.interrupted_on_slurm()? {
                store.requeue(id)?;
                store.add_log(id, "server restarted: following this job's Slurm tasks again")?;
                tracing::info!(job = id, "re-attaching to the job's Slurm tasks");
            }
        }
        let (events, _) = broadcast::channel(1024);
        let runner = Arc::new(Self {
            store,
            settings,
            events,
            slots: Mutex::new(Slots::default()),
            wake: Condvar::new(),
            on_final,
            phases: Mutex::default(),
        });
        let r = runner.clone();
        std::thread::Builder::new()
            .name("job-scheduler".into())
            .spawn(move || r.schedule())?;
        Ok(runner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the scheduler (a job was queued).
    pub fn poke(&self) {
        self.wake.notify_all();
    }

    /// Stops scheduling; running jobs pause at their next step (checkpointing first).
    pub fn shutdown(&self) {
        let mut s = self.lock();
        s.shutdown = true;
        for sw in s.running.values() {
            sw.request(Stop::Paused);
        }
        self.wake.notify_all();
    }

    /// Ids of the running jobs.
    pub fn running(&self) -> Vec<i64> {
        self.lock().running.keys().copied().collect()
    }

    /// Asks a running job to stop; returns false when it is not running here.
    pub fn request(&self, id: i64, stop: Stop) -> bool {
        match self.lock().running.get(&id) {
            Some(sw) => {
                sw.request(stop);
                true
            }
            None => false,
        }
    }

    pub fn publish(&self, e: JobEvent) {
        let _ = self.events.send(e);
    }

    fn schedule(self: Arc<Self>) {
        loop {
            let mut slots = self.lock();
            if slots.shutdown {
                return;
            }
            let free = self.settings.slots.saturating_sub(slots.running.len());
            let next = if free > 0 {
                match self.store.queued() {
                    Ok(q) => q.into_iter().find(|j| !slots.running.contains_key(&j.id)),
                    Err(e) => {
                        tracing::error!("reading the queue: {e:#}");
                        None
                    }
                }
            } else {
                None
            };
            match next {
                Some(job) => {
                    match self.store.claim(job.id) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::error!(job = job.id, "cannot start: {e:#}");
                            drop(slots);
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    }
                    let sw = StopSwitch::default();
                    slots.running.insert(job.id, sw.clone());
                    drop(slots);
                    self.publish(JobEvent::State {
                        id: job.id,
                        state: JobState::Running,
                        error: None,
                    });
                    let r = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("job-{}", job.id))
                        .spawn(move || r.run_job(job, sw));
                    if let Err(e) = spawned {
                        tracing::error!("cannot spawn a job thread: {e}");
                    }
                }
                None => {
                    let _ = self.wake.wait_timeout(slots, Duration::from_secs(1));
                }
            }
        }
    }

    fn run_job(self: Arc<Self>, job: JobRow, sw: StopSwitch) {
        let id = job.id;
        // Everything the job logs (here and in the engine) is under its span in the server's log.
        let _span = tracing::info_span!("job", id, kind = job.kind.as_str()).entered();
        tracing::info!("started");
        let dir = job_dir(&self.settings.data_dir, id);
        let outcome = create_job_dir(&dir, job.resume).and_then(|()| {
            exec::reconcile_artifacts(&self.store, id, &dir)?;
            let ctx = self.context(id, &dir, sw);
            let settings = self.settings.clone();
            let job = job.clone();
            let store = self.store.clone();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                exec::execute(&job, &dir, &settings, &store, &ctx)
            }))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                Err(anyhow::anyhow!("the job panicked: {msg}"))
            })
        });
        let (state, error) = match &outcome {
            Ok(()) => (JobState::Succeeded, None),
            Err(e) => match stopped(e) {
                Some(Stop::Paused) if job.kind.pausable() => (JobState::Paused, None),
                Some(_) => (JobState::Cancelled, None),
                None => (JobState::Failed, Some(format!("{e:#}"))),
            },
        };
        // A pause the server asked for while shutting down leaves the job resumable on restart.
        let state = if state == JobState::Paused && self.lock().shutdown {
            JobState::Interrupted
        } else {
            state
        };
        if let Some(e) = &error {
            let _ = self.store.add_log(id, &format!("error: {e}"));
            tracing::warn!(job = id, "job failed: {e}");
        }
        tracing::info!(%state, "ended");
        if let Err(e) = self.store.set_state(id, state, error.as_deref()) {
            tracing::error!(job = id, "cannot record the end: {e:#}");
        }
        self.set_phase(id, None);
        self.publish(JobEvent::State { id, state, error });
        self.lock().running.remove(&id);
        self.wake.notify_all();
        if state.is_final() {
            if let Ok(Some(row)) = self.store.job(id) {
                (self.on_final)(&row);
            }
        }
    }

    /// What job `id` is doing between progress reports, if it said.
    pub fn phase(&self, id: i64) -> Option<&'static str> {
        self.phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied()
    }

    fn set_phase(&self, id: i64, what: Option<&'static str>) {
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        match what {
            Some(w) => phases.insert(id, w),
            None => phases.remove(&id),
        };
    }

    /// The context a job reports through: store rows plus broadcast events.
    fn context(self: &Arc<Self>, id: i64, dir: &Path, sw: StopSwitch) -> JobCtx {
        let r = self.clone();
        let dir = dir.to_path_buf();
        let started: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
        JobCtx::new(sw, move |e| {
            let res = match e {
                Event::Progress { done, total, unit } => {
                    r.set_phase(id, None);
                    let mut s = started.lock().unwrap_or_else(|p| p.into_inner());
                    let rate = match *s {
                        None => {
                            // First report of this run: a resumed run redoes the steps after it.
                            *s = Some((Instant::now(), done));
                            let _ = r.store.truncate_metrics(id, done);
                            None
                        }
                        Some((t, d0)) => {
                            let secs = t.elapsed().as_secs_f64();
                            (done > d0 && secs > 0.0).then(|| (done - d0) as f64 / secs)
                        }
                    };
                    r.publish(JobEvent::Progress {
                        id,
                        done,
                        total,
                        unit: unit.into(),
                        rate,
                    });
                    r.store.set_progress(id, done, total, unit, rate)
                }
                Event::Metrics { step, values } => r.store.add_metrics(id, step, &values),
                Event::Phase(what) => {
                    r.set_phase(id, Some(what));
                    r.publish(JobEvent::Phase {
                        id,
                        phase: what.into(),
                    });
                    Ok(())
                }
                Event::Log(line) => {
                    tracing::debug!(job = id, "{line}");
                    r.publish(JobEvent::Log {
                        id,
                        line: line.clone(),
                    });
                    r.store.add_log(id, &line)
                }
                // A job's result text (tables, reports) belongs in its log, line by line.
                Event::Output(text) => text.lines().try_for_each(|line| {
                    r.publish(JobEvent::Log {
                        id,
                        line: line.to_owned(),
                    });
                    r.store.add_log(id, line)
                }),
                Event::Detail { .. } => Ok(()),
                Event::Artifact { kind, path, step } => {
                    let rel = path
                        .strip_prefix(&dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    r.publish(JobEvent::Artifact {
                        id,
                        kind: kind.into(),
                        path: rel.clone(),
                        step,
                    });
                    r.store.add_artifact(id, kind, &rel, step, exec::size_of(&path))
                }
            };
            if let Err(e) = res {
                tracing::error!(job = id, "job store: {e:#}");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_shows_until_the_next_progress_report_and_is_broadcast() {
        let data = std::env::temp_dir().join(format!("cemiface-phase-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        let store = Arc::new(Store::open(&data.join("jobs.sqlite")).unwrap());
        let settings = RunnerSettings {
            data_dir: data.clone(),
            assets_dir: data.clone(),
            device: "cpu".parse().unwrap(),
            device_label: "cpu".into(),
            slots: 1,
            default_generator: data.join("none"),
            executor: Executor::default(),
        };
        let runner = Runner::start(store, settings, Box::new(|_| {})).unwrap();
        let mut events = runner.events.subscribe();
        let ctx = runner.context(7, &data, StopSwitch::default());
        ctx.progress(1, 10, "step");
        assert_eq!(runner.phase(7), None);
        ctx.phase("writing a checkpoint");
        assert_eq!(runner.phase(7), Some("writing a checkpoint"));
        ctx.progress(2, 10, "step");
        assert_eq!(runner.phase(7), None, "the next progress report ends the phase");
        let mut phases = Vec::new();
        while let Ok(e) = events.try_recv() {
            if let JobEvent::Phase { id, phase } = e {
                phases.push((id, phase));
            }
        }
        assert_eq!(phases, [(7, "writing a checkpoint".to_owned())]);
        std::fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn a_first_run_never_reuses_an_existing_job_folder() {
        let data = std::env::temp_dir().join(format!("cemiface-jobdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let dir = job_dir(&data, 1);
        create_job_dir(&dir, false).unwrap();
        std::fs::write(dir.join("old.txt"), b"another job's").unwrap();
        let e = create_job_dir(&dir, false).unwrap_err().to_string();
        assert!(e.contains("already exists") && e.contains("jobs/1"), "{e}");
        create_job_dir(&dir, true).unwrap();
        assert!(dir.join("old.txt").exists(), "nothing is deleted");
        std::fs::remove_dir_all(&data).unwrap();
    }
}
