//! `cemiface bench`: UNet forward, forward + backward and DDIM-step times of a preset, the dlib
//! identity network's, and one training step of the `latent-dcgan` preset, as a table; with
//! `--torch`, the same rows for PyTorch twins of the same networks (bench/torch_twin.py, run by
//! the given Python) side by side.

pub mod demo_stream;
pub mod latent_step;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::checkpoint::random_frozen;
use cemiface_engine::diffusion::ddim::Ddim;
use cemiface_engine::diffusion::schedule::NoiseSchedule;
use cemiface_engine::diffusion::unet::UNet;
use cemiface_engine::identity::dlib_resnet::DlibResNet;
use clap::Args;

use crate::commands::diffusion::load_config;

/// Options of `cemiface bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A preset (demo-64, paper-112, tiny-32) or a TOML config file.
    #[arg(default_value = "demo-64")]
    pub config: String,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batches: Vec<usize>,
    /// Timed repetitions per row (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// A Python with PyTorch (e.g. ~/torchvenv/bin/python): also time the PyTorch twins and print
    /// the Candle/PyTorch ratio.
    #[arg(long)]
    pub torch: Option<PathBuf>,
    /// The twin script.
    #[arg(long, default_value = "bench/torch_twin.py")]
    pub torch_script: PathBuf,
    /// Instead: time the live demo's streaming (previews, similarity) against bare sampling.
    #[arg(long)]
    pub demo_stream: bool,
    /// DDIM steps of the `--demo-stream` runs.
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    #[command(flatten)]
    pub assets: crate::commands::AssetsDirArg,
}

fn median_secs(iters: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut t: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let s = Instant::now();
            f().map(|()| s.elapsed().as_secs_f64())
        })
        .collect::<anyhow::Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Rows of dlib as E_id (frozen weights, input gradient only: what SimMat pays per sample), next to
/// the trainable-weight rows above them.
const E_ID_FORWARD: &str = "E_id forward (dlib, frozen)";
const E_ID_FORWARD_BACKWARD: &str = "E_id forward + backward (dlib, frozen)";

/// One timed row.
struct Row {
    what: String,
    batch: usize,
    seconds: f64,
}

fn candle_rows(args: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    let cfg = load_config(&args.config)?;
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let unet = UNet::new(cfg.model.clone(), VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let dvm = VarMap::new();
    let dlib = DlibResNet::new(VarBuilder::from_varmap(&dvm, DType::F32, &dev))?;
    // E_id as training uses it: loaded (frozen) weights, gradient for the input only.
    let e_id = random_frozen(&dev, DlibResNet::new)?;
    let ddim = Ddim::new(NoiseSchedule::new(&cfg.schedule)?, 20, 1.0)?;
    let (s, d) = (cfg.model.image_size, cfg.model.condition.id_dim);
    let mut rows = Vec::new();
    for &b in &args.batches {
        let x = Tensor::randn(0f32, 1., (b, 3, s, s), &dev)?;
        let t = Tensor::new(vec![500u32; b].as_slice(), &dev)?;
        let id = Tensor::randn(0f32, 1., (b, d), &dev)?;
        let m = Tensor::zeros(b, DType::F32, &dev)?;
        let mut row = |what: &str, sec: f64| {
            rows.push(Row {
                what: what.into(),
                batch: b,
                seconds: sec,
            });
        };
        row(
            "unet forward",
            median_secs(args.iters, || Ok(unet.forward(&x, &t, &id, &m).map(drop)?))?,
        );
        row(
            "unet forward + backward",
            median_secs(args.iters, || {
                unet.forward(&x, &t, &id, &m)?.sqr()?.mean_all()?.backward()?;
                Ok(())
            })?,
        );
        let z = x.zeros_like()?;
        row(
            "DDIM step",
            median_secs(args.iters, || {
                let eps = unet.forward(&x, &t, &id, &m)?;
                ddim.step(10, &x, &eps, &z)?;
                Ok(())
            })?,
        );
        let chips = (Tensor::rand(0f32, 255., (b, 3, 150, 150), &dev))?;
        row(
            "dlib forward",
            median_secs(args.iters, || Ok(dlib.forward(&chips).map(drop)?))?,
        );
        let var = candle_core::Var::from_tensor(&chips)?;
        row(
            "dlib forward + backward",
            median_secs(args.iters, || {
                dlib.forward(var.as_tensor())?.sqr()?.sum_all()?.backward()?;
                Ok(())
            })?,
        );
        row(
            E_ID_FORWARD,
            median_secs(args.iters, || Ok(e_id.forward(&chips).map(drop)?))?,
        );
        row(
            E_ID_FORWARD_BACKWARD,
            median_secs(args.iters, || {
                e_id.forward(var.as_tensor())?.sqr()?.sum_all()?.backward()?;
                Ok(())
            })?,
        );
    }
    let cfg = latent_step::config()?;
    let images = cfg.train.sim_mat_batch;
    let what = format!(
        "latent-dcgan train step ({} MSE + {images} SimMat)",
        cfg.train.batch_size
    );
    let mut trainer = latent_step::trainer(cfg)?;
    rows.push(Row {
        what,
        batch: images,
        seconds: median_secs(args.iters, || Ok(trainer.train_step().map(drop)?))?,
    });
    Ok(rows)
}

fn torch_rows(args: &BenchArgs, python: &PathBuf) -> anyhow::Result<Vec<Row>> {
    let cfg = load_config(&args.config)?;
    let latent = latent_step::config()?;
    let request = serde_json::json!({
        "unet": cfg.model,
        "latent": {"denoiser": latent.denoiser, "train": latent.train, "optimizer": latent.optimizer},
        "batches": args.batches,
        "iters": args.iters,
        "threads": candle_core::utils::get_num_threads(),
    });
    let mut child = Command::new(python)
        .arg(&args.torch_script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} {}", python.display(), args.torch_script.display()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "the PyTorch twin failed ({})", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).with_context(|| format!("twin output: {l}"))?;
            Ok(Row {
                what: v["what"].as_str().unwrap_or_default().to_string(),
                batch: v["batch"].as_u64().unwrap_or(0) as usize,
                seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
            })
        })
        .collect()
}

/// `cemiface bench`.
pub fn run_bench(args: BenchArgs, ctx: &crate::commands::ctx::JobCtx) -> anyhow::Result<()> {
    if args.demo_stream {
        return crate::commands::bench::demo_stream::run(
            &args.config,
            args.steps,
            args.iters,
            &args.assets.assets_dir,
            ctx,
        );
    }
    crate::out!(
        ctx,
        "{} on {} CPU thread(s) (RAYON_NUM_THREADS) of {}, median of {}:",
        args.config,
        candle_core::utils::get_num_threads(),
        cemiface_engine::device::CpuInfo::detect(),
        args.iters
    );
    let ours = candle_rows(&args)?;
    let Some(python) = &args.torch else {
        crate::out!(ctx, "| what | batch | seconds | images/s |\n|---|---|---|---|");
        for r in &ours {
            crate::out!(
                ctx,
                "| {} | {} | {:.3} | {:.2} |",
                r.what,
                r.batch,
                r.seconds,
                r.batch as f64 / r.seconds
            );
        }
        return Ok(());
    };
    let theirs = torch_rows(&args, python)?;
    crate::out!(
        ctx,
        "| what | batch | Candle (s) | PyTorch (s) | Candle / PyTorch | Candle images/s |"
    );
    crate::out!(ctx, "|---|---|---|---|---|---|");
    for r in &ours {
        let t = theirs
            .iter()
            .find(|t| t.what == r.what && t.batch == r.batch)
            .map_or(f64::NAN, |t| t.seconds);
        crate::out!(
            ctx,
            "| {} | {} | {:.3} | {:.3} | {:.2}× | {:.2} |",
            r.what,
            r.batch,
            r.seconds,
            t,
            r.seconds / t,
            r.batch as f64 / r.seconds
        );
    }
    Ok(())
}
