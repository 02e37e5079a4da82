//! `cemiface train-diffusion`, `cemiface sample` and `cemiface model-info`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::data::image_io::{self, ImageLimits};
use cemiface_engine::data::sources::tensor_image;
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use cemiface_engine::diffusion::ddim::Ddim;
use cemiface_engine::diffusion::generator::Generator;
use cemiface_engine::diffusion::latent::config::LatentConfig;
use cemiface_engine::diffusion::schedule::NoiseSchedule;
use cemiface_engine::diffusion::trainer::{build_encoder, build_source, TrainConfig, Trainer};
use cemiface_engine::diffusion::unet::{UNet, UNetConfig};
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::encoder::cosine_rows;
use cemiface_engine::report::plot::{Chart, Series};
use cemiface_engine::run_dir::{append_metrics, truncate_metrics, StepMetrics};
use clap::Args;

use crate::commands::ctx::JobCtx;
use crate::commands::sample_grid::SampleGrid;
use crate::commands::AssetsDirArg;
use cemiface_app::units::eta;

/// Named presets (files in `configs/`, compiled in).
pub const PRESETS: [(&str, &str); 4] = [
    (
        "latent-dcgan",
        include_str!("../../../../configs/latent-dcgan.toml"),
    ),
    ("demo-64", include_str!("../../../../configs/demo-64.toml")),
    ("paper-112", include_str!("../../../../configs/paper-112.toml")),
    ("tiny-32", include_str!("../../../../configs/tiny-32.toml")),
];

/// Reads a preset name (`presets`: name and compiled-in text) or a TOML file into a config; unknown
/// keys are errors.
pub fn load_toml<T: serde::de::DeserializeOwned>(spec: &str, presets: &[(&str, &str)]) -> anyhow::Result<T> {
    let (name, text) = preset_text(spec, presets)?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// The name and TOML text of a preset or config file.
fn preset_text(spec: &str, presets: &[(&str, &str)]) -> anyhow::Result<(String, String)> {
    Ok(match presets.iter().find(|(n, _)| *n == spec) {
        Some((n, t)) => (n.to_string(), t.to_string()),
        None => {
            let text = std::fs::read_to_string(spec).with_context(|| {
                let names: Vec<&str> = presets.iter().map(|p| p.0).collect();
                format!(
                    "{spec}: not a preset ({}) and not a readable config file",
                    names.join(", ")
                )
            })?;
            (spec.to_string(), text)
        }
    })
}

/// Reads a pixel generator preset or TOML file.
pub fn load_config(spec: &str) -> anyhow::Result<TrainConfig> {
    load_toml(spec, &PRESETS)
}

/// A generator config of either kind.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum GeneratorConfig {
    Pixel(TrainConfig),
    Latent(LatentConfig),
}

/// Reads a generator preset or TOML file of either kind (latent configs have a `[denoiser]` table).
pub fn load_generator_config(spec: &str) -> anyhow::Result<GeneratorConfig> {
    let (name, text) = preset_text(spec, &PRESETS)?;
    let parse_err = |e: toml::de::Error| anyhow::anyhow!("{name}: {e}");
    Ok(if LatentConfig::is_latent_toml(&text) {
        GeneratorConfig::Latent(toml::from_str(&text).map_err(parse_err)?)
    } else {
        GeneratorConfig::Pixel(toml::from_str(&text).map_err(parse_err)?)
    })
}

/// Options of `cemiface train-diffusion`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A preset (latent-dcgan, demo-64, paper-112, tiny-32) or a TOML config file.
    #[arg(long)]
    pub config: String,
    #[command(flatten)]
    pub run: crate::commands::RunArgs,
    /// At each checkpoint, sample four held-out DCGAN identities at m = -1, 0, 1 with the EMA
    /// weights into `samples/step_NNNNNNN.png`.
    #[arg(long)]
    pub sample_grid: bool,
    /// Start the UNet from an unconditional guided-diffusion checkpoint (torch `.pt`, e.g. DCFace's
    /// FFHQ model `ffhq_10m.pt` for paper-112); the condition path starts fresh. Pixel presets
    /// only; a resumed run keeps its own weights.
    #[arg(long, value_name = "CHECKPOINT.pt")]
    pub init: Option<PathBuf>,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

/// Creates a run folder; one with checkpoints is refused unless resuming. Returns its newest
/// checkpoint, if any.
pub fn open_run_dir(run_dir: &Path, resume: bool) -> anyhow::Result<Option<PathBuf>> {
    let latest = cemiface_engine::run_dir::latest_checkpoint(run_dir);
    if latest.is_some() && !resume {
        bail!(
            "{} already has checkpoints: pass --resume to continue, or choose another --run-dir",
            run_dir.display()
        );
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    Ok(latest)
}

/// `cemiface train-diffusion`.
pub fn run_train(args: TrainArgs, ctx: &JobCtx) -> anyhow::Result<()> {
    let cfg = match load_generator_config(&args.config)? {
        GeneratorConfig::Pixel(cfg) => cfg,
        GeneratorConfig::Latent(cfg) => return crate::commands::latent::run_train_latent(args, cfg, ctx),
    };
    let device = ComputeDevice::select(args.device)?;
    let latest = open_run_dir(&args.run.run_dir, args.run.resume)?;
    let encoder = build_encoder(&cfg.encoder, &args.assets.assets_dir, &device.device)?;
    let source = build_source(&cfg, encoder.clone(), &args.assets.assets_dir, &device.device)?;
    let mut trainer = Trainer::new(cfg.clone(), encoder.clone(), source, &device.device)?;
    if let (true, Some(ckpt)) = (args.run.resume, &latest) {
        trainer.load(ckpt)?;
        truncate_metrics(&args.run.run_dir, trainer.step())?;
        ctx.log(format!(
            "resumed from {} (step {})",
            ckpt.display(),
            trainer.step()
        ));
    }
    if let Some(init) = &args.init {
        if trainer.step() > 0 {
            ctx.log(format!(
                "--init {} not applied: the run resumes at step {} with its own weights",
                init.display(),
                trainer.step()
            ));
        } else {
            let r = trainer.init_from_checkpoint(init)?;
            std::fs::write(
                args.run.run_dir.join("init.json"),
                serde_json::to_string_pretty(&r)?,
            )?;
            ctx.log(format!(
                "initialised {} UNet tensors ({} values) from {}{}; condition path fresh ({} tensors){}",
                r.loaded,
                r.loaded_values,
                init.display(),
                if r.eps_half_of_learned_sigma {
                    " (ε half of a learn_sigma output)"
                } else {
                    ""
                },
                r.fresh.len(),
                if r.unused.is_empty() {
                    String::new()
                } else {
                    format!("; unused in the file: {}", r.unused.join(", "))
                }
            ));
        }
    }
    std::fs::write(
        args.run.run_dir.join("config.toml"),
        toml::to_string_pretty(&cfg)?,
    )?;
    let total = args.run.max_steps.unwrap_or(cfg.train.steps).min(cfg.train.steps);
    ctx.log(format!(
        "training {} parameters on {} ({}), batch {}, to step {total}",
        trainer.parameter_count(),
        device,
        cfg.encoder_name(),
        cfg.train.batch_size
    ));
    let grid = args
        .sample_grid
        .then(|| {
            SampleGrid::new(
                encoder.as_ref(),
                &args.assets.assets_dir,
                cfg.model.image_size,
                &device.device,
            )
        })
        .transpose()?;
    train_loop(
        &mut trainer,
        total,
        cfg.train.checkpoint_every,
        &args.run.run_dir,
        grid.as_ref(),
        ctx,
    )
}

/// What the shared training loop drives: the pixel trainer or the latent one.
pub trait DiffusionTrainer {
    fn step(&self) -> u64;
    fn train_step(&mut self) -> cemiface_engine::Result<StepMetrics>;
    fn save(&self, run_dir: &Path) -> cemiface_engine::Result<PathBuf>;
}

impl DiffusionTrainer for Trainer {
    fn step(&self) -> u64 {
        Trainer::step(self)
    }
    fn train_step(&mut self) -> cemiface_engine::Result<StepMetrics> {
        Trainer::train_step(self)
    }
    fn save(&self, run_dir: &Path) -> cemiface_engine::Result<PathBuf> {
        Trainer::save(self, run_dir)
    }
}

/// Steps to `total`: metrics per step, progress with ETA, a checkpoint (and sample grid) every
/// `checkpoint_every` steps and at the end, pause/cancel at every step.
pub fn train_loop(
    trainer: &mut dyn DiffusionTrainer,
    total: u64,
    checkpoint_every: u64,
    run_dir: &Path,
    grid: Option<&SampleGrid>,
    ctx: &JobCtx,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let first = trainer.step();
    ctx.progress(first, total, "step");
    while trainer.step() < total {
        ctx.stop_point(trainer.step(), first, || Ok(trainer.save(run_dir)?))?;
        let m = trainer.train_step()?;
        append_metrics(run_dir, &m)?;
        ctx.metrics(
            m.step,
            vec![
                ("loss", m.loss as f64),
                ("mse", m.mse as f64),
                ("sim_mat", m.sim_mat as f64),
                // |m − s| and |1 − s| of the achieved similarity s (SimMat's two terms).
                ("sim_error", m.sim as f64),
                ("rec_error", m.rec as f64),
                ("lr", m.lr),
                ("images_per_s", m.images_per_s),
            ],
        );
        ctx.progress(m.step, total, "step");
        let done = (m.step - first) as f64;
        let rate = done / started.elapsed().as_secs_f64();
        if m.step % 10 == 0 || m.step == total {
            let line = format!(
                "step {}/{total} | loss {:.4} (mse {:.4}, simmat {:.4}, |m-s| {:.3}) | {:.2} it/s | ETA {}",
                m.step,
                m.loss,
                m.mse,
                m.sim_mat,
                m.sim,
                rate,
                eta((total - m.step) as f64 / rate)
            );
            ctx.log(line);
        }
        if m.step % checkpoint_every == 0 || m.step == total {
            ctx.phase("writing a checkpoint");
            let dir = trainer.save(run_dir)?;
            ctx.log(format!("checkpoint {}", dir.display()));
            ctx.artifact("checkpoint", &dir, Some(m.step));
            write_loss_chart(run_dir)?;
            if let Some(grid) = grid {
                ctx.phase("drawing the sample grid");
                let path = grid.render(&dir, run_dir, m.step)?;
                ctx.artifact("sample-grid", &path, Some(m.step));
            }
        }
    }
    Ok(())
}

/// Writes `run_dir/loss.png` from `metrics.jsonl`: MSE, SimMat and |m − s| against the step, each a
/// moving average over 50 steps (single steps are too noisy to read).
pub fn write_loss_chart(run_dir: &Path) -> anyhow::Result<()> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<StepMetrics> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let smooth = |pick: fn(&StepMetrics) -> f32| -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(rows.len());
        let mut sum = 0.0f64;
        for (i, r) in rows.iter().enumerate() {
            sum += pick(r) as f64;
            if i >= 50 {
                sum -= pick(&rows[i - 50]) as f64;
            }
            out.push((r.step as f64, sum / (i + 1).min(50) as f64));
        }
        out
    };
    let chart = Chart {
        title: "train-diffusion (moving average of 50 steps)".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: vec![
            Series {
                label: "MSE".into(),
                points: smooth(|m| m.mse),
            },
            Series {
                label: "SimMat".into(),
                points: smooth(|m| m.sim_mat),
            },
            Series {
                label: "|m - s|".into(),
                points: smooth(|m| m.sim),
            },
        ],
        ..Default::default()
    };
    chart.save(&run_dir.join("loss"), 800, 400)?;
    Ok(())
}

/// Options of `cemiface sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The inquiry face: a photo (aligned automatically) or a square aligned crop.
    #[arg(long)]
    pub inquiry: PathBuf,
    /// Similarity target in [-1, 1].
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub m: f32,
    /// DDIM steps (1–1000).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// DDIM η in [0, 1] (1 = DCFace's sampler).
    #[arg(long, default_value_t = 1.0)]
    pub eta: f64,
    /// Noise seed (the same seed and inputs give the same image).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Render m = -1, -0.5, 0, 0.5, 1 side by side (after the inquiry) instead of one image.
    #[arg(long)]
    pub m_sweep: bool,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    pub raw: bool,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    /// Output image (PNG/JPEG).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub assets: AssetsDirArg,
}

/// The inquiry as a (1, 3, S, S) tensor in [−1, 1] in the ArcFace frame.
fn inquiry_tensor(path: &Path, size: usize, assets: &Path, device: &Device) -> anyhow::Result<Tensor> {
    let img = image_io::read(path, ImageLimits::default())?;
    let crop = if img.width() == img.height() && matches!(img.width(), 64 | 112) {
        img
    } else {
        FaceAligner::load(assets, device)?
            .align(&img, &path.display().to_string())?
            .arcface
    };
    Ok(cemiface_engine::data::sources::image_tensor(&crop, size, device)?)
}

/// `cemiface sample`.
pub fn run_sample(args: SampleArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<()> {
    let dev = ComputeDevice::select(args.device)?.device;
    let gen = Generator::load(&args.checkpoint, args.raw, &args.assets.assets_dir, &dev)?;
    let encoder = gen.encoder();
    let x = inquiry_tensor(&args.inquiry, gen.image_size(), &args.assets.assets_dir, &dev)?;
    let c_id = gen.inquiry(&x, None)?;
    let ms: Vec<f32> = if args.m_sweep {
        vec![-1.0, -0.5, 0.0, 0.5, 1.0]
    } else {
        vec![args.m]
    };
    let seeds = vec![args.seed; ms.len()];
    let started = Instant::now();
    let out = gen.sample(&c_id, &ms, &seeds, args.steps, args.eta, |s| {
        ctx.detail(s.step as u64 + 1, s.steps as u64, "DDIM step");
        ControlFlow::Continue(())
    })?;
    crate::say!(
        ctx,
        "sampled {} image(s) in {:.1} s",
        ms.len(),
        started.elapsed().as_secs_f64()
    );
    let sims: Vec<f32> = cosine_rows(
        &encoder.descriptors(&out)?,
        &c_id.broadcast_as((ms.len(), c_id.dim(1)?))?.contiguous()?,
    )?
    .to_vec1()?;
    if let Some((_, reached)) = gen.inquiry_latent(&c_id)? {
        // Cached by the sampling above: the inversion's similarity bounds what m = 1 can reach.
        crate::out!(
            ctx,
            "inquiry latent: G(z_a) reaches similarity {reached:.3} (inversion, {})",
            encoder.name()
        );
    }
    for (m, s) in ms.iter().zip(&sims) {
        crate::out!(
            ctx,
            "m = {m:+.2}: achieved similarity {s:.3} ({})",
            encoder.name()
        );
    }
    let img = if args.m_sweep {
        let s = gen.image_size() as u32;
        let mut sheet = image::RgbImage::new(s * (ms.len() as u32 + 1), s);
        image::imageops::replace(&mut sheet, &tensor_image(&x.squeeze(0)?)?, 0, 0);
        for i in 0..ms.len() {
            image::imageops::replace(
                &mut sheet,
                &tensor_image(&out.get(i)?)?,
                (s * (i as u32 + 1)) as i64,
                0,
            );
        }
        sheet
    } else {
        tensor_image(&out.get(0)?)?
    };
    image_io::write(&img, &args.output)?;
    crate::say!(ctx, "→ {}", args.output.display());
    Ok(())
}

/// Options of `cemiface model-info`.
#[derive(Debug, Args)]
pub struct ModelInfoArgs {
    /// A preset (demo-64, paper-112, tiny-32) or a TOML config file.
    pub config: String,
    /// DDIM steps whose timesteps are listed.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long)]
    pub json: bool,
}

/// Parameters of a UNet config (built on the CPU, weights discarded).
pub fn parameter_count(cfg: &UNetConfig) -> anyhow::Result<usize> {
    let vm = VarMap::new();
    UNet::new(
        cfg.clone(),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let n = vm.all_vars().iter().map(|v| v.elem_count()).sum();
    Ok(n)
}

/// `cemiface model-info`.
pub fn run_model_info(args: ModelInfoArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<()> {
    let cfg = match load_generator_config(&args.config)? {
        GeneratorConfig::Pixel(cfg) => cfg,
        GeneratorConfig::Latent(cfg) => {
            let params =
                cemiface_engine::diffusion::latent::denoiser::LatentDenoiser::parameter_count(&cfg.denoiser);
            let ddim = Ddim::new(NoiseSchedule::new(&cfg.schedule)?, args.steps, 1.0)?;
            let info = serde_json::json!({ "params": params, "space": "latent", "ddim_timesteps": ddim.timesteps() });
            if args.json {
                crate::out!(ctx, "{info}");
            } else {
                crate::out!(
                    ctx,
                    "{}: latent denoiser, {params} parameters (decoder: the DCGAN)",
                    args.config
                );
                crate::out!(ctx, "DDIM-{} timesteps: {:?}", args.steps, ddim.timesteps());
            }
            return Ok(());
        }
    };
    let params = parameter_count(&cfg.model)?;
    let flops = cfg.model.flops_per_image();
    let ddim = Ddim::new(NoiseSchedule::new(&cfg.schedule)?, args.steps, 1.0)?;
    let info =
        serde_json::json!({ "params": params, "flops_per_image": flops, "ddim_timesteps": ddim.timesteps() });
    if args.json {
        crate::out!(ctx, "{info}");
    } else {
        crate::out!(
            ctx,
            "{}: {params} parameters, {:.2} GFLOPs per image per step",
            args.config,
            flops as f64 / 1e9
        );
        crate::out!(ctx, "DDIM-{} timesteps: {:?}", args.steps, ddim.timesteps());
    }
    Ok(())
}
