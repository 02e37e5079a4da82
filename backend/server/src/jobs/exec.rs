//! Runs a job: turns its spec into the command line of the matching command and runs it with the
//! job's context, in the job's folder (`data/jobs/<id>/`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::runner::{job_dir, Executor, RunnerSettings};
use super::spec::{job_ref, JobSpec};
use super::store::{JobRow, Store};
use crate::commands::ctx::JobCtx;
use crate::commands::diffusion::{self, GeneratorConfig};
use crate::commands::generate::{self, GenerateArgs};
use crate::commands::{eval, train_fr, Argv};

/// The folder of another job's output, checked to exist.
fn job_output(settings: &RunnerSettings, reference: &str, sub: &str, what: &str) -> anyhow::Result<PathBuf> {
    let id = job_ref(reference).with_context(|| format!("`{reference}` is not job:<id>"))?;
    let p = job_dir(&settings.data_dir, id).join(sub);
    if !p.exists() {
        bail!("job {id} has no {what} (is it the right kind of job, and did it run?)");
    }
    Ok(p)
}

/// The generator a generate job names.
pub fn generator_path(settings: &RunnerSettings, name: &str) -> anyhow::Result<PathBuf> {
    if name == "default" {
        if !settings.default_generator.exists() {
            bail!(
                "the server has no default generator ({} does not exist)",
                settings.default_generator.display()
            );
        }
        return Ok(settings.default_generator.clone());
    }
    job_output(settings, name, "run/checkpoints", "checkpoints")?;
    Ok(job_dir(&settings.data_dir, job_ref(name).expect("checked")).join("run"))
}

/// Writes a job's resolved config (preset plus the job's overrides) as `config.toml` in its
/// folder; returns the path for the command's `--config`.
fn write_config(dir: &Path, cfg: &impl serde::Serialize) -> anyhow::Result<PathBuf> {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string_pretty(cfg)?)?;
    Ok(path)
}

/// Runs `job` to its end (or its stop): writes the job as a command line ([`Argv`]) and runs it
/// here (parsed by the command's own definition) or on the cluster (the same flags in a batch
/// script).
pub fn execute(
    job: &JobRow,
    dir: &Path,
    settings: &RunnerSettings,
    store: &Store,
    ctx: &JobCtx,
) -> anyhow::Result<()> {
    // Cluster tasks run in another folder: they get absolute paths; local runs keep the job's
    // paths as they are (artifacts are recorded relative to the job's folder).
    let slurm = match &settings.executor {
        Executor::Local => None,
        Executor::Slurm(s) => Some(s),
    };
    let path = |p: &Path| -> anyhow::Result<String> {
        Ok(match slurm {
            Some(_) => std::path::absolute(p)?.display().to_string(),
            None => p.display().to_string(),
        })
    };
    let run_dir = dir.join("run");
    match &job.spec {
        JobSpec::TrainDiffusion(t) => {
            let mut cfg = diffusion::load_generator_config(&t.config)?;
            // The job's overrides of the preset's training settings (two types, the same fields).
            macro_rules! overrides {
                ($train:expr) => {{
                    let s = &mut $train;
                    s.steps = t.steps.unwrap_or(s.steps);
                    s.batch_size = t.batch_size.unwrap_or(s.batch_size);
                    s.checkpoint_every = t.checkpoint_every.unwrap_or(s.checkpoint_every);
                    s.seed = t.seed.unwrap_or(s.seed);
                    s.steps as u64
                }};
            }
            let total = match &mut cfg {
                GeneratorConfig::Pixel(c) => overrides!(c.train),
                GeneratorConfig::Latent(c) => overrides!(c.train),
            };
            let mut argv = Argv::new("train-diffusion");
            argv.opt("config", path(&write_config(dir, &cfg)?)?)
                .opt("run-dir", path(&run_dir)?)
                .switch("resume", true)
                .switch("sample-grid", t.sample_grid)
                .opt("device", settings.device)
                .opt("assets-dir", path(&settings.assets_dir)?);
            match slurm {
                None => diffusion::run_train(argv.parse()?, ctx),
                Some(slurm) => {
                    let run_dir = std::path::absolute(&run_dir)?;
                    super::slurm_train::run(job.id, &argv.argv(), dir, &run_dir, total, slurm, store, ctx)
                }
            }
        }
        JobSpec::Generate(g) => {
            let mut argv = Argv::new("generate");
            argv.opt("checkpoint", path(&generator_path(settings, &g.generator)?)?)
                .opt("out", path(&dir.join("dataset"))?)
                .opt("inquiries", &g.inquiries)
                .opt("identities", g.identities)
                .opt("images-per-identity", g.images_per_identity)
                .opt("m", g.m.iter().map(f32::to_string).collect::<Vec<_>>().join(","))
                .opt("steps", g.steps)
                .opt("eta", g.eta)
                .opt("seed", g.seed)
                .opt("format", &g.format)
                .switch("rec", g.rec)
                .opt("shard", "0/1")
                .opt("device", settings.device)
                .opt("assets-dir", path(&settings.assets_dir)?);
            if g.inquiries == "random" {
                argv.opt("inquiry-copies", 0);
            }
            let args: GenerateArgs = argv.parse()?;
            match slurm {
                None => generate::run_generate(args, ctx),
                Some(slurm) => super::slurm_generate::run(job.id, args, dir, slurm, store, ctx),
            }
        }
        JobSpec::TrainFr(t) => {
            let data = match job_ref(&t.data) {
                Some(_) => {
                    let d = job_output(settings, &t.data, "dataset", "data set")?;
                    if !d.join("manifest.jsonl").exists() {
                        bail!("the data set of {} is not complete yet", t.data);
                    }
                    d
                }
                None => PathBuf::from(&t.data),
            };
            let mut cfg = train_fr::load_fr_config(&t.config)?;
            if let Some(b) = t.batch_size {
                cfg.train.batch_size = b;
            }
            let mut argv = Argv::new("train-fr");
            argv.opt("config", path(&write_config(dir, &cfg)?)?)
                .opt("data", path(&data)?)
                .opt("run-dir", path(&run_dir)?)
                .switch("resume", true)
                .opt("device", settings.device);
            if let Some(n) = t.steps {
                argv.opt("max-steps", n);
            }
            match slurm {
                None => train_fr::run_train_fr(argv.parse()?, ctx),
                Some(slurm) => {
                    let images = cemiface_engine::data::labelled::open(&data)?.len();
                    let epochs_steps =
                        (images / cfg.train.batch_size.max(1)) as u64 * cfg.train.epochs as u64;
                    let total = t.steps.unwrap_or(u64::MAX).min(epochs_steps);
                    let run_dir = std::path::absolute(&run_dir)?;
                    super::slurm_train::run(job.id, &argv.argv(), dir, &run_dir, total, slurm, store, ctx)
                }
            }
        }
        JobSpec::Eval(v) => {
            let mut argv = Argv::new("eval");
            for set in &v.sets {
                argv.arg(set);
            }
            if let Some(c) = v.checkpoint.as_deref() {
                job_output(settings, c, "run/checkpoints", "checkpoints")?;
                argv.opt(
                    "checkpoint",
                    path(&job_dir(&settings.data_dir, job_ref(c).expect("checked")).join("run"))?,
                );
            }
            argv.opt("report", path(&dir.join("report.json"))?)
                .opt("device", settings.device)
                .opt("assets-dir", path(&settings.assets_dir)?);
            eval::run_eval(argv.parse()?, ctx)
        }
    }
}

/// The step of a training run's newest complete checkpoint.
pub fn resume_point(run_dir: &Path) -> Option<u64> {
    let ckpt = cemiface_engine::run_dir::latest_checkpoint(run_dir)?;
    ckpt.file_name()?.to_str()?.strip_prefix("step_")?.parse().ok()
}

/// Bytes of a file, or of all files under a folder.
pub fn size_of(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|rd| rd.filter_map(Result::ok).map(|e| size_of(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Records checkpoints and sample grids found in a job's folder that the store does not list
/// (a server killed between writing one and recording it). Recording is idempotent.
pub fn reconcile_artifacts(store: &Store, id: i64, dir: &Path) -> anyhow::Result<()> {
    let step_of = |name: &str| {
        name.trim_start_matches("step_")
            .trim_end_matches(".png")
            .parse::<u64>()
            .ok()
    };
    for (sub, kind) in [("run/checkpoints", "checkpoint"), ("run/samples", "sample-grid")] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let complete = kind != "checkpoint" || e.path().join("state.json").exists();
            if let (Some(step), true) = (step_of(&name).filter(|_| name.starts_with("step_")), complete) {
                store.add_artifact(id, kind, &format!("{sub}/{name}"), Some(step), size_of(&e.path()))?;
            }
        }
    }
    Ok(())
}
