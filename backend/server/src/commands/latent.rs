//! `cemiface train-diffusion` for the latent preset (`latent-dcgan`): builds (or reads) the run's
//! reference bank, then drives the latent trainer through the shared training loop.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cemiface_engine::data::dcgan::Dcgan;
use cemiface_engine::device::ComputeDevice;
use cemiface_engine::diffusion::latent::bank::Bank;
use cemiface_engine::diffusion::latent::config::LatentConfig;
use cemiface_engine::diffusion::latent::trainer::LatentTrainer;
use cemiface_engine::diffusion::trainer::build_encoder;
use cemiface_engine::run_dir::{truncate_metrics, StepMetrics};

use crate::commands::ctx::JobCtx;
use crate::commands::diffusion::{open_run_dir, train_loop, DiffusionTrainer, TrainArgs};
use crate::commands::sample_grid::SampleGrid;

impl DiffusionTrainer for LatentTrainer {
    fn step(&self) -> u64 {
        LatentTrainer::step(self)
    }
    fn train_step(&mut self) -> cemiface_engine::Result<StepMetrics> {
        LatentTrainer::train_step(self)
    }
    fn save(&self, run_dir: &Path) -> cemiface_engine::Result<PathBuf> {
        LatentTrainer::save(self, run_dir)
    }
}

/// Trains a latent generator (see `cemiface_engine::diffusion::latent`).
pub fn run_train_latent(args: TrainArgs, cfg: LatentConfig, ctx: &JobCtx) -> anyhow::Result<()> {
    if let Some(init) = &args.init {
        anyhow::bail!(
            "--init {}: guided-diffusion checkpoints start a pixel UNet (demo-64, paper-112, tiny-32); \
             the latent preset has no UNet",
            init.display()
        );
    }
    let device = ComputeDevice::select(args.device)?;
    let latest = open_run_dir(&args.run.run_dir, args.run.resume)?;
    let assets = &args.assets.assets_dir;
    let encoder = build_encoder(&cfg.encoder, assets, &device.device)?;
    let gan_path = cfg
        .decoder
        .weights
        .clone()
        .unwrap_or_else(|| assets.join("gan-face-generate/weights.tar"));
    let gan = Dcgan::load(&gan_path, &device.device)?;
    std::fs::write(
        args.run.run_dir.join("config.toml"),
        toml::to_string_pretty(&cfg)?,
    )?;
    let started = Instant::now();
    ctx.log(format!(
        "reference bank: {} anchors × {} teachers (cached in {})",
        cfg.bank.anchors,
        cfg.bank.mixes,
        args.run
            .run_dir
            .join(cemiface_engine::diffusion::latent::bank::FILE)
            .display()
    ));
    let mut last_report = Instant::now();
    // On the CPU on every device: it reads 8-bit images, and its depthwise convolutions have a CPU
    // kernel only (Candle's grouped convolution is one small convolution per channel).
    let detector = if cfg.bank.faces {
        Some(cemiface_engine::face::align::FaceAligner::load(
            assets,
            &candle_core::Device::Cpu,
        )?)
    } else {
        None
    };
    let bank = Bank::load_or_build(
        &cfg,
        &gan,
        encoder.as_ref(),
        detector.as_ref(),
        &args.run.run_dir,
        &device.device,
        |done, total| {
            ctx.progress(done as u64, total as u64, "descriptor");
            if last_report.elapsed().as_secs() >= 10 {
                ctx.log(format!("reference bank: {done}/{total} descriptors"));
                last_report = Instant::now();
            }
        },
    )?;
    let hist = similarity_histogram(&bank.mix_s);
    ctx.log(format!(
        "reference bank ready in {:.0} s; teacher similarity histogram (−1…1, 10 bins): {hist:?}",
        started.elapsed().as_secs_f64()
    ));
    let total = args.run.max_steps.unwrap_or(cfg.train.steps).min(cfg.train.steps);
    let checkpoint_every = cfg.train.checkpoint_every;
    let mut trainer = LatentTrainer::new(cfg, gan, encoder, bank, &device.device)?;
    if let (true, Some(ckpt)) = (args.run.resume, &latest) {
        trainer.load(ckpt)?;
        truncate_metrics(&args.run.run_dir, trainer.step())?;
        ctx.log(format!(
            "resumed from {} (step {})",
            ckpt.display(),
            trainer.step()
        ));
    }
    ctx.log(format!(
        "training {} parameters on {}, batch {} + {} SimMat, to step {total}",
        trainer.parameter_count(),
        device,
        trainer.cfg.train.batch_size,
        trainer.cfg.train.sim_mat_batch
    ));
    let grid = args
        .sample_grid
        .then(|| SampleGrid::new(trainer.encoder_for_grid().as_ref(), assets, 64, &device.device))
        .transpose()?;
    train_loop(
        &mut trainer,
        total,
        checkpoint_every,
        &args.run.run_dir,
        grid.as_ref(),
        ctx,
    )
}

/// Counts of values in ten equal bins over [−1, 1].
fn similarity_histogram(s: &[f32]) -> [usize; 10] {
    let mut h = [0; 10];
    for v in s {
        h[(((v + 1.0) / 2.0 * 10.0).floor() as usize).min(9)] += 1;
    }
    h
}
