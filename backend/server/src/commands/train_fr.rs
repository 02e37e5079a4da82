//! `cemiface train-fr`: a face-recognition model trained on a (synthetic) labelled set.

use std::path::PathBuf;

use anyhow::bail;
use cemiface_engine::device::{ComputeDevice, DeviceRequest};
use cemiface_engine::recognition::trainer::{FrConfig, FrStepMetrics, FrTrainer};
use cemiface_engine::report::plot::{Chart, Series};
use clap::Args;

use crate::commands::ctx::JobCtx;

/// Named presets (files in `configs/`, compiled in).
pub const PRESETS: [(&str, &str); 2] = [
    ("fr-paper", include_str!("../../../../configs/fr-paper.toml")),
    ("fr-tiny", include_str!("../../../../configs/fr-tiny.toml")),
];

/// Reads an FR preset or TOML file (unknown keys are errors).
pub fn load_fr_config(spec: &str) -> anyhow::Result<FrConfig> {
    crate::commands::diffusion::load_toml(spec, &PRESETS)
}

/// Options of `cemiface train-fr`.
#[derive(Debug, Args)]
pub struct TrainFrArgs {
    /// A preset (fr-paper, fr-tiny) or a TOML config file.
    #[arg(long)]
    pub config: String,
    /// Labelled training data: a folder of identity folders (e.g. a `cemiface generate` output) or an
    /// insightface `.rec` (overrides the config's `data`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub run: crate::commands::RunArgs,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
}

fn read_metrics(path: &std::path::Path, upto: u64) -> Vec<FrStepMetrics> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<FrStepMetrics>(l).ok())
        .filter(|m| m.step <= upto)
        .collect()
}

/// `cemiface train-fr`.
pub fn run_train_fr(args: TrainFrArgs, ctx: &JobCtx) -> anyhow::Result<()> {
    let mut cfg = load_fr_config(&args.config)?;
    if let Some(d) = &args.data {
        cfg.data = Some(d.clone());
    }
    let Some(data_path) = cfg.data.clone() else {
        bail!("no training data: pass --data <folder or .rec>");
    };
    let device = ComputeDevice::select(args.device)?;
    let latest = crate::commands::diffusion::open_run_dir(&args.run.run_dir, args.run.resume)?;
    let data = cemiface_engine::data::labelled::open(&data_path)?;
    let mut trainer = FrTrainer::new(cfg.clone(), data, &device.device)?;
    let metrics_path = args.run.run_dir.join("metrics.jsonl");
    let mut history = Vec::new();
    if let (true, Some(ckpt)) = (args.run.resume, &latest) {
        trainer.load(ckpt)?;
        history = read_metrics(&metrics_path, trainer.step());
        ctx.log(format!(
            "resumed from {} (step {})",
            ckpt.display(),
            trainer.step()
        ));
    }
    let lines: String = history
        .iter()
        .map(|m| serde_json::to_string(m).unwrap() + "\n")
        .collect();
    std::fs::write(&metrics_path, lines)?;
    std::fs::write(
        args.run.run_dir.join("config.toml"),
        toml::to_string_pretty(&cfg)?,
    )?;
    let total = args.run.max_steps.unwrap_or(u64::MAX).min(trainer.total_steps());
    ctx.log(format!(
        "training {:?}-{} + {:?} on {} ({}), batch {}, {} steps per epoch, to step {total}",
        cfg.backbone.layout,
        cfg.backbone.depth,
        cfg.head,
        trainer.describe_data(),
        device,
        cfg.train.batch_size,
        trainer.steps_per_epoch()
    ));
    let mut log = std::fs::OpenOptions::new().append(true).open(&metrics_path)?;
    let first = trainer.step();
    ctx.progress(first, total, "step");
    while trainer.step() < total {
        ctx.stop_point(trainer.step(), first, || Ok(trainer.save(&args.run.run_dir)?))?;
        let m = trainer.train_step()?;
        use std::io::Write;
        writeln!(log, "{}", serde_json::to_string(&m)?)?;
        ctx.metrics(
            m.step,
            vec![
                ("loss", m.loss as f64),
                ("accuracy", m.accuracy as f64),
                ("lr", m.lr),
            ],
        );
        ctx.progress(m.step, total, "step");
        if m.step % 10 == 0 || m.step == total {
            ctx.log(format!(
                "step {} epoch {} | loss {:.3} | batch accuracy {:.2} | lr {:.4}",
                m.step, m.epoch, m.loss, m.accuracy, m.lr
            ));
        }
        history.push(m.clone());
        if m.step % cfg.train.checkpoint_every == 0 || m.step == total {
            ctx.phase("writing a checkpoint");
            let dir = trainer.save(&args.run.run_dir)?;
            ctx.log(format!("checkpoint {}", dir.display()));
            ctx.artifact("checkpoint", &dir, Some(m.step));
            write_loss_chart(&args.run.run_dir, &history)?;
        }
    }
    Ok(())
}

fn write_loss_chart(run_dir: &std::path::Path, history: &[FrStepMetrics]) -> anyhow::Result<()> {
    let chart = Chart {
        title: "train-fr loss".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: vec![Series {
            label: "CE with margin".into(),
            points: history.iter().map(|m| (m.step as f64, m.loss as f64)).collect(),
        }],
        ..Default::default()
    };
    chart.save(&run_dir.join("loss"), 800, 400)?;
    Ok(())
}
