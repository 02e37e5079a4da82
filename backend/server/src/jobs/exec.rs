//! Runs a job: turns its spec into the arguments of the matching CLI command and calls it with
//! the job's context, in the job's folder (`data/jobs/<id>/`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::ctx::JobCtx;
use super::runner::{job_dir, Executor, RunnerSettings};
use super::spec::{job_ref, JobSpec};
use super::store::{JobRow, Store};
use crate::cli::AssetsDirArg;

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
fn write_config(dir: &Path, cfg: &impl serde::Serialize) -> anyhow::Result<String> {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string_pretty(cfg)?)?;
    Ok(path.display().to_string())
}

/// Runs `job` to its end (or its stop).
pub fn execute(job: &JobRow, dir: &Path, settings: &RunnerSettings, store: &Store, ctx: &JobCtx) -> anyhow::Result<()> {
    let assets = || AssetsDirArg {
        assets_dir: settings.assets_dir.clone(),
    };
    let run_dir = dir.join("run");
    match &job.spec {
        JobSpec::TrainDiffusion(t) => {
            use crate::diffusion_cli::GeneratorConfig;
            let mut cfg = crate::diffusion_cli::load_generator_config(&t.config)?;
            match &mut cfg {
                GeneratorConfig::Pixel(c) => {
                    c.train.steps = t.steps.unwrap_or(c.train.steps);
                    c.train.batch_size = t.batch_size.unwrap_or(c.train.batch_size);
                    c.train.checkpoint_every = t.checkpoint_every.unwrap_or(c.train.checkpoint_every);
                    c.train.seed = t.seed.unwrap_or(c.train.seed);
                }
                GeneratorConfig::Latent(c) => {
                    c.train.steps = t.steps.unwrap_or(c.train.steps);
                    c.train.batch_size = t.batch_size.unwrap_or(c.train.batch_size);
                    c.train.checkpoint_every = t.checkpoint_every.unwrap_or(c.train.checkpoint_every);
                    c.train.seed = t.seed.unwrap_or(c.train.seed);
                }
            }
            let total = match &cfg {
                GeneratorConfig::Pixel(c) => c.train.steps as u64,
                GeneratorConfig::Latent(c) => c.train.steps as u64,
            };
            let args = crate::diffusion_cli::TrainArgs {
                config: write_config(dir, &cfg)?,
                run_dir,
                resume: true,
                max_steps: None,
                sample_grid: t.sample_grid,
                device: settings.device,
                assets: assets(),
            };
            match &settings.executor {
                Executor::Local => crate::diffusion_cli::run_train(args, ctx),
                Executor::Slurm(slurm) => {
                    let run_dir = std::path::absolute(&args.run_dir)?;
                    let mut argv = vec![
                        "train-diffusion".to_owned(),
                        "--config".into(),
                        std::path::absolute(&args.config)?.display().to_string(),
                        "--run-dir".into(),
                        run_dir.display().to_string(),
                        "--resume".into(),
                        "--device".into(),
                        super::slurm::device_arg(settings.device),
                        "--assets-dir".into(),
                        std::path::absolute(&settings.assets_dir)?.display().to_string(),
                    ];
                    if t.sample_grid {
                        argv.push("--sample-grid".into());
                    }
                    super::slurm_train::run(job.id, &argv, dir, &run_dir, total, slurm, store, ctx)
                }
            }
        }
        JobSpec::Generate(g) => {
            let copies = (g.inquiries == "random").then_some(0);
            let args = crate::generate_cli::GenerateArgs {
                    checkpoint: generator_path(settings, &g.generator)?,
                    out: dir.join("dataset"),
                    inquiries: g.inquiries.clone(),
                    identities: g.identities,
                    unique_threshold: None,
                    images_per_identity: g.images_per_identity,
                    m: g.m.clone(),
                    steps: g.steps,
                    eta: g.eta,
                    batch: 16,
                    seed: g.seed,
                    inquiry_copies: copies,
                    format: if g.format == "jpeg" {
                        crate::generate_cli::FormatArg::Jpeg
                    } else {
                        crate::generate_cli::FormatArg::Png
                    },
                    rec: g.rec,
                    shard: Some(crate::generate_cli::ShardArg(cemiface_engine::synth::generation::Shard {
                        index: 0,
                        count: 1,
                    })),
                    prepare_only: false,
                    no_merge: false,
                    print_sbatch: None,
                    print_k8s: None,
                    raw: false,
                    device: settings.device,
                    assets: assets(),
            };
            match &settings.executor {
                Executor::Local => crate::generate_cli::run_generate(args, ctx),
                Executor::Slurm(slurm) => super::slurm_generate::run(job.id, args, dir, slurm, store, ctx),
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
            let mut cfg = crate::fr_cli::load_fr_config(&t.config)?;
            if let Some(b) = t.batch_size {
                cfg.train.batch_size = b;
            }
            let args = crate::fr_cli::TrainFrArgs {
                config: write_config(dir, &cfg)?,
                data: Some(data.clone()),
                run_dir,
                resume: true,
                max_steps: t.steps,
                device: settings.device,
            };
            match &settings.executor {
                Executor::Local => crate::fr_cli::run_train_fr(args, ctx),
                Executor::Slurm(slurm) => {
                    let images = cemiface_engine::data::labelled::open(&data)?.len();
                    let epochs_steps = (images / cfg.train.batch_size.max(1)) as u64 * cfg.train.epochs as u64;
                    let total = t.steps.unwrap_or(u64::MAX).min(epochs_steps);
                    let run_dir = std::path::absolute(&args.run_dir)?;
                    let mut argv = vec![
                        "train-fr".to_owned(),
                        "--config".into(),
                        std::path::absolute(&args.config)?.display().to_string(),
                        "--data".into(),
                        std::path::absolute(&data)?.display().to_string(),
                        "--run-dir".into(),
                        run_dir.display().to_string(),
                        "--resume".into(),
                        "--device".into(),
                        super::slurm::device_arg(settings.device),
                    ];
                    if let Some(n) = t.steps {
                        argv.extend(["--max-steps".to_owned(), n.to_string()]);
                    }
                    super::slurm_train::run(job.id, &argv, dir, &run_dir, total, slurm, store, ctx)
                }
            }
        }
        JobSpec::Eval(v) => {
            let checkpoint = v
                .checkpoint
                .as_deref()
                .map(|c| job_output(settings, c, "run/checkpoints", "checkpoints").map(|_| {
                    job_dir(&settings.data_dir, job_ref(c).expect("checked")).join("run")
                }))
                .transpose()?;
            crate::eval_cli::run_eval(
                crate::eval_cli::EvalArgs {
                    sets: v.sets.iter().map(PathBuf::from).collect(),
                    checkpoint,
                    arch: crate::identity_cli::Arch::IrSe50,
                    batch: 32,
                    save_embeddings: None,
                    json: false,
                    report: Some(dir.join("report.json")),
                    device: settings.device,
                    assets: assets(),
                },
                ctx,
            )
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
