//! A generation job on Slurm (`cemiface serve --executor slurm`): the server selects the inquiry
//! identities once (`--prepare-only`), submits one sbatch array whose task i runs `cemiface
//! generate … --shard i/N --no-merge` in the job's folder (a file system the nodes share), follows
//! the tasks, resubmits a failed shard up to `--slurm-retries` times, and runs the merge once when
//! every shard is done: the result is the same bytes a local run writes.
//!
//! Each shard's current task is kept in the store (`slurm_tasks`), so a restarted server picks the
//! job up again and never submits a shard twice. A shard's state comes from its marker on disk
//! (`dataset/shards/i-of-N.done`, written by the task) first, then from `squeue`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cemiface_engine::synth::generation::{DatasetDir, Shard};

use super::slurm::{self, SlurmSettings, TaskState};
use super::store::{SlurmTask, Store};
use crate::commands::batch_script::SbatchOptions;
use crate::commands::ctx::{JobCtx, Stop};
use crate::commands::generate::{run_generate, GenerateArgs, ShardArg};

/// How long a just-submitted task may be missing from `squeue` before it counts as lost.
const GRACE: Duration = Duration::from_secs(20);

/// `path` made absolute (task processes run elsewhere, in the job's folder).
fn absolute(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// `cemiface-<data folder id>-<job id>`: unique on a cluster that several servers share.
pub fn job_name(job_dir: &Path, job_id: i64) -> String {
    let data_id = job_dir
        .parent()
        .and_then(Path::parent)
        .and_then(|d| std::fs::read_to_string(d.join("data-id")).ok())
        .map(|s| {
            s.trim()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect::<String>()
        })
        .unwrap_or_default();
    if data_id.is_empty() {
        format!("cemiface-job-{job_id}")
    } else {
        format!("cemiface-{data_id}-{job_id}")
    }
}

/// Runs generation `args` of job `job_id` (folder `dir`) as a Slurm array.
pub fn run(
    job_id: i64,
    mut args: GenerateArgs,
    dir: &Path,
    slurm: &SlurmSettings,
    store: &Store,
    ctx: &JobCtx,
) -> anyhow::Result<()> {
    args.out = absolute(&args.out)?;
    args.checkpoint = absolute(&args.checkpoint)?;
    args.assets.assets_dir = absolute(&args.assets.assets_dir)?;
    let one = |a: &GenerateArgs, prepare: bool| GenerateArgs {
        shard: Some(ShardArg(Shard { index: 0, count: 1 })),
        prepare_only: prepare,
        ..a.clone()
    };
    // 1. The identities, once, here (every task reads this inquiries.json).
    run_generate(one(&args, true), ctx)?;
    let shards = slurm.shards.clamp(1, args.identities.max(1));
    let dataset = DatasetDir::new(&args.out);
    let slurm_dir = absolute(&dir.join("slurm"))?;
    std::fs::create_dir_all(&slurm_dir)?;
    let script = slurm_dir.join("generate.sbatch");
    let opts = SbatchOptions {
        job_name: Some(job_name(dir, job_id)),
        partition: slurm.partition.clone(),
        account: slurm.account.clone(),
        extra: slurm.extra.clone(),
        output: Some(slurm_dir.join("%A_%a.log").display().to_string()),
        program: None,
    };
    std::fs::write(
        &script,
        crate::commands::batch_script::sbatch(&args.to_argv(), shards, &opts)?,
    )?;

    // 2. Submit, or pick up the tasks a previous server process submitted.
    let mut tasks = store.slurm_tasks(job_id)?;
    if tasks.len() != shards {
        let id = slurm::sbatch(&script, Some(&format!("0-{}", shards - 1)), dir)?;
        tasks = (0..shards as u32)
            .map(|i| SlurmTask {
                shard: i,
                slurm_id: format!("{id}_{i}"),
                attempt: 0,
                state: "pending".into(),
            })
            .collect();
        for t in &tasks {
            store.put_slurm_task(job_id, t)?;
        }
        ctx.log(format!(
            "submitted Slurm array {id}: {shards} shards ({})",
            script.display()
        ));
    } else {
        let ids: Vec<&str> = tasks.iter().map(|t| t.slurm_id.as_str()).collect();
        ctx.log(format!("re-attached to Slurm tasks {}", ids.join(", ")));
    }
    let mut seen_at = vec![Instant::now(); shards];
    let total = (args.identities * args.images_per_identity) as u64;

    // 3. Follow the tasks until every shard is done.
    loop {
        if let Some(stop) = ctx.requested() {
            if stop == Stop::Cancelled {
                let live: Vec<String> = tasks
                    .iter()
                    .filter(|t| !matches!(t.state.as_str(), "done"))
                    .map(|t| t.slurm_id.clone())
                    .collect();
                slurm::scancel(&live)?;
                store.clear_slurm_tasks(job_id)?;
                ctx.log(format!("cancelled Slurm tasks {}", live.join(", ")));
            } else {
                ctx.log("the server stops following the Slurm tasks; they run on and are picked up again on resume");
            }
            return Err(stop.into());
        }
        let states = slurm::task_states()?;
        let mut fatal = None;
        for (i, t) in tasks.iter_mut().enumerate() {
            let marker = dataset.shard_marker(Shard {
                index: i,
                count: shards,
            });
            let (new_state, failed) = if marker.exists() {
                ("done".to_owned(), None)
            } else {
                match states.get(&t.slurm_id) {
                    Some((TaskState::Pending, _)) => ("pending".to_owned(), None),
                    Some((TaskState::Running, _)) => ("running".to_owned(), None),
                    Some((TaskState::Completed, _)) => (
                        t.state.clone(),
                        Some("COMPLETED without finishing its identities".to_owned()),
                    ),
                    Some((TaskState::Ended, name)) => (t.state.clone(), Some(name.clone())),
                    None if seen_at[i].elapsed() < GRACE => (t.state.clone(), None),
                    None => (t.state.clone(), Some("no longer known to Slurm".to_owned())),
                }
            };
            if let Some(why) = failed {
                if t.attempt >= slurm.retries {
                    t.state = format!("failed ({why})");
                    fatal = Some(format!(
                        "shard {i} failed {} time(s), last as Slurm task {} ({why}); its log: {}",
                        t.attempt + 1,
                        t.slurm_id,
                        slurm_dir.join(format!("{}.log", t.slurm_id)).display()
                    ));
                    continue;
                }
                let id = slurm::sbatch(&script, Some(&i.to_string()), dir)?;
                let old = std::mem::replace(&mut t.slurm_id, format!("{id}_{i}"));
                t.attempt += 1;
                t.state = "pending".into();
                seen_at[i] = Instant::now();
                store.put_slurm_task(job_id, t)?;
                ctx.log(format!(
                    "shard {i}: Slurm task {old} ended {why}; retry {} of {} as {}",
                    t.attempt, slurm.retries, t.slurm_id
                ));
            } else if new_state != t.state {
                t.state = new_state;
                store.put_slurm_task(job_id, t)?;
            }
        }
        if let Some(why) = fatal {
            let live: Vec<String> = tasks
                .iter()
                .filter(|t| t.state == "pending" || t.state == "running")
                .map(|t| t.slurm_id.clone())
                .collect();
            let _ = slurm::scancel(&live);
            // A resume submits afresh (finished identities are kept).
            store.clear_slurm_tasks(job_id)?;
            bail!(why);
        }
        let done_ids = (0..args.identities).filter(|&i| dataset.identity_done(i)).count();
        ctx.progress((done_ids * args.images_per_identity) as u64, total, "img");
        if tasks.iter().all(|t| t.state == "done") {
            break;
        }
        for _ in 0..10 {
            if ctx.requested().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // 4. The merge, once.
    ctx.log(format!("all {shards} shards done; merging"));
    run_generate(one(&args, false), ctx)
}
