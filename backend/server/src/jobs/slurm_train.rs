//! A training job on Slurm (`cemiface serve --executor slurm`): one sbatch job runs the same
//! command the server would (`cemiface train-diffusion` / `train-fr`, always `--resume`) in the
//! job's folder. The server follows it: the task's `metrics.jsonl` becomes the job's curves and
//! progress, new checkpoints and sample grids become artifacts, a failed task is resubmitted (it
//! resumes from its newest checkpoint) up to `--slurm-retries` times, a cancel is `scancel`. The
//! task id is kept in the store, so a restarted server follows the same task again.

use std::collections::HashSet;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::slurm::{self, SlurmSettings, TaskState};
use super::store::{SlurmTask, Store};
use crate::commands::batch_script::SbatchOptions;
use crate::commands::ctx::{JobCtx, Stop};

/// How long a just-submitted task may be missing from `squeue` before it counts as lost.
const GRACE: Duration = Duration::from_secs(20);

/// The curves a training run's `metrics.jsonl` holds, under the names the job's charts use.
fn metric_name(key: &str) -> Option<&'static str> {
    Some(match key {
        "loss" => "loss",
        "mse" => "mse",
        "sim_mat" => "sim_mat",
        "sim" | "sim_error" => "sim_error",
        "rec" | "rec_error" => "rec_error",
        "lr" => "lr",
        "images_per_s" => "images_per_s",
        "accuracy" => "accuracy",
        _ => return None,
    })
}

/// Runs `argv` (a training command whose run folder is `run_dir`, `total` steps) as one Slurm
/// task of job `job_id` and follows it to its end.
#[allow(clippy::too_many_arguments)]
pub fn run(
    job_id: i64,
    argv: &[String],
    dir: &Path,
    run_dir: &Path,
    total: u64,
    slurm: &SlurmSettings,
    store: &Store,
    ctx: &JobCtx,
) -> anyhow::Result<()> {
    let slurm_dir = std::path::absolute(dir.join("slurm"))?;
    std::fs::create_dir_all(&slurm_dir)?;
    let path = slurm_dir.join("train.sbatch");
    let opts = SbatchOptions {
        job_name: Some(super::slurm_generate::job_name(dir, job_id)),
        partition: slurm.partition.clone(),
        account: slurm.account.clone(),
        extra: slurm.extra.clone(),
        output: Some(slurm_dir.join("%j.log").display().to_string()),
        program: None,
    };
    std::fs::write(&path, crate::commands::batch_script::sbatch_single(argv, &opts))?;
    let submit = || -> anyhow::Result<String> { slurm::sbatch(&path, None, dir) };
    let mut task = match store.slurm_tasks(job_id)?.into_iter().next() {
        Some(t) => {
            ctx.log(format!("re-attached to Slurm job {}", t.slurm_id));
            t
        }
        None => {
            let t = SlurmTask {
                shard: 0,
                slurm_id: submit()?,
                attempt: 0,
                state: "pending".into(),
            };
            store.put_slurm_task(job_id, &t)?;
            ctx.log(format!("submitted Slurm job {} ({})", t.slurm_id, path.display()));
            t
        }
    };
    let mut since = Instant::now();
    let mut follow = Follow::default();
    loop {
        follow.poll(run_dir, total, ctx);
        if let Some(stop) = ctx.requested() {
            if stop == Stop::Cancelled {
                slurm::scancel(std::slice::from_ref(&task.slurm_id))?;
                store.clear_slurm_tasks(job_id)?;
                ctx.log(format!("cancelled Slurm job {}", task.slurm_id));
            } else {
                ctx.log(
                    "the server stops following the Slurm job; it runs on and is picked up again on resume",
                );
            }
            return Err(stop.into());
        }
        let states = slurm::task_states()?;
        let failed = match states.get(&task.slurm_id) {
            Some((TaskState::Pending, _)) => {
                set(&mut task, "pending", store, job_id);
                None
            }
            Some((TaskState::Running, _)) => {
                set(&mut task, "running", store, job_id);
                None
            }
            Some((TaskState::Completed, _)) => {
                follow.poll(run_dir, total, ctx);
                if follow.step >= total {
                    set(&mut task, "done", store, job_id);
                    ctx.log(format!("Slurm job {} completed", task.slurm_id));
                    return Ok(());
                }
                Some("COMPLETED before its last step".to_owned())
            }
            Some((TaskState::Ended, name)) => Some(name.clone()),
            None if since.elapsed() < GRACE => None,
            None if follow.step >= total => {
                set(&mut task, "done", store, job_id);
                return Ok(());
            }
            None => Some("no longer known to Slurm".to_owned()),
        };
        if let Some(why) = failed {
            if task.attempt >= slurm.retries {
                store.clear_slurm_tasks(job_id)?;
                bail!(
                    "the Slurm job failed {} time(s), last as {} ({why}); its log: {}",
                    task.attempt + 1,
                    task.slurm_id,
                    slurm_dir.join(format!("{}.log", task.slurm_id)).display()
                );
            }
            let old = std::mem::replace(&mut task.slurm_id, submit()?);
            task.attempt += 1;
            task.state = "pending".into();
            since = Instant::now();
            store.put_slurm_task(job_id, &task)?;
            ctx.log(format!(
                "Slurm job {old} ended {why}; retry {} of {} as {} (from the newest checkpoint)",
                task.attempt, slurm.retries, task.slurm_id
            ));
        }
        for _ in 0..10 {
            if ctx.requested().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Records a task's new state.
fn set(task: &mut SlurmTask, state: &str, store: &Store, job_id: i64) {
    if task.state != state {
        task.state = state.to_owned();
        let _ = store.put_slurm_task(job_id, task);
    }
}

/// What has been read of a run folder so far.
#[derive(Default)]
struct Follow {
    offset: u64,
    step: u64,
    artifacts: HashSet<String>,
}

impl Follow {
    /// Forwards new metrics lines and new checkpoints / sample grids.
    fn poll(&mut self, run_dir: &Path, total: u64, ctx: &JobCtx) {
        if let Ok(mut f) = std::fs::File::open(run_dir.join("metrics.jsonl")) {
            if f.seek(SeekFrom::Start(self.offset)).is_ok() {
                let mut r = std::io::BufReader::new(f);
                let mut line = String::new();
                // Only whole lines: a line being written is read on the next poll.
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                    self.offset += line.len() as u64;
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if let (Some(step), Some(o)) = (v["step"].as_u64(), v.as_object()) {
                            let values = o
                                .iter()
                                .filter_map(|(k, x)| Some((metric_name(k)?, x.as_f64()?)))
                                .collect();
                            ctx.metrics(step, values);
                            self.step = self.step.max(step);
                        }
                    }
                    line.clear();
                }
            }
        }
        ctx.progress(self.step, total, "step");
        for (sub, kind) in [("checkpoints", "checkpoint"), ("samples", "sample-grid")] {
            let Ok(rd) = std::fs::read_dir(run_dir.join(sub)) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name
                    .strip_prefix("step_")
                    .map(|s| s.trim_end_matches(".png"))
                    .and_then(|s| s.parse().ok());
                let complete = kind != "checkpoint" || e.path().join("state.json").exists();
                if let (Some(step), true) = (step, complete) {
                    if self.artifacts.insert(format!("{sub}/{name}")) {
                        ctx.artifact(kind, &e.path(), Some(step));
                    }
                }
            }
        }
    }
}
