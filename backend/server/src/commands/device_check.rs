//! `cemiface device-check`: a compute device checked against the CPU, then timed.
//!
//! Parity: the same seeded weights and inputs run on the CPU with the engine's fast kernels (the
//! reference) and on `--device`. With `--device cpu` the second run takes the device-generic
//! kernels (`nn::kernels::with_generic`): the code a GPU runs, checked on a machine without one.
//! Rows: each preset's UNet forward and one DDIM-20 sample from the same seed, dlib's ResNet with
//! its real weights, and the latent preset's denoiser. Tolerances are relative to the reference's
//! largest value and stated in the table.
//!
//! Speed (on `--device` only): per preset, DDIM-20 for one image, DDIM-20 images/s at `--batch`,
//! and training steps/s of the real trainer (SimMat through dlib included).
//!
//! Output: a markdown table on stdout, and with `--json` / `--markdown` the same in files.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::data::sources::FaceSource;
use cemiface_engine::device::{self, ComputeDevice, CpuInfo, DeviceRequest};
use cemiface_engine::diffusion::ddim::Ddim;
use cemiface_engine::diffusion::latent::denoiser::LatentDenoiser;
use cemiface_engine::diffusion::schedule::NoiseSchedule;
use cemiface_engine::diffusion::trainer::{
    build_encoder, build_source, DataConfig, EncoderConfig, TrainConfig, Trainer,
};
use cemiface_engine::diffusion::unet::UNet;
use cemiface_engine::identity::dlib_resnet::DlibResNet;
use cemiface_engine::identity::encoder::{IResNetEncoder, IdentityEncoder};
use cemiface_engine::nn::kernels::with_generic;
use cemiface_engine::noise::NoiseRng;
use cemiface_engine::recognition::iresnet::IResNet;
use clap::Args;
use serde::Serialize;

mod memory;

use crate::commands::ctx::JobCtx;
use crate::commands::diffusion::{load_config, load_generator_config, GeneratorConfig};

/// Options of `cemiface device-check`.
#[derive(Debug, Args)]
pub struct DeviceCheckArgs {
    /// The device to check against the CPU: cuda, cuda:N, or cpu (then the generic kernels).
    #[arg(long, env = "CEMIFACE_DEVICE", default_value = "cuda")]
    pub device: DeviceRequest,
    /// Pixel presets (or TOML configs) whose UNet is checked and timed.
    #[arg(long, value_delimiter = ',', default_value = "demo-64,paper-112")]
    pub presets: Vec<String>,
    /// Images per DDIM-20 batch in the throughput rows.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed repetitions per speed row (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Parity only.
    #[arg(long)]
    pub no_speed: bool,
    /// Only the memory rows (GPU memory flat over repeated forwards and training steps), then stop.
    #[arg(long)]
    pub memory_only: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the markdown tables here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[command(flatten)]
    pub assets: crate::commands::AssetsDirArg,
}

/// One parity row.
#[derive(Debug, Serialize)]
pub struct Parity {
    pub what: String,
    /// max |device − cpu| / max |cpu|.
    pub rel_diff: f64,
    pub tolerance: f64,
    pub pass: bool,
}

/// One speed row.
#[derive(Debug, Serialize)]
pub struct Speed {
    pub what: String,
    pub preset: String,
    pub batch: usize,
    pub seconds: f64,
    /// Images (or training samples) per second.
    pub per_second: f64,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    device: String,
    gpu: Option<cemiface_engine::device::GpuInfo>,
    cpu: String,
    memory: &'a [memory::MemoryCheck],
    parity: &'a [Parity],
    speed: &'a [Speed],
}

/// max |a − b| / max |b| over all elements (both moved to the CPU).
fn rel_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f64> {
    let (a, b) = (
        a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?,
        b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?,
    );
    let scale = b.abs()?.max_all()?.to_scalar::<f64>()?.max(1e-12);
    Ok((a - b)?.abs()?.max_all()?.to_scalar::<f64>()? / scale)
}

/// A network on the CPU with seeded weights (every variable moved off its init by N(0, 0.02), so
/// zero-initialised layers count too) and the same network on `dev`. Both hold plain (detached)
/// tensors: weights that were variables would make every forward record its graph, and a DDIM
/// chain would then keep all its steps' activations alive.
fn twin<N>(
    dev: &Device,
    seed: u64,
    build: impl Fn(VarBuilder) -> cemiface_engine::Result<N>,
) -> anyhow::Result<(N, N)> {
    let vm = VarMap::new();
    build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
    let mut rng = NoiseRng::new(seed);
    let mut names: Vec<_> = vm
        .data()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut on_cpu, mut on_dev) = (HashMap::new(), HashMap::new());
    for (name, var) in names {
        let noise = (rng.randn(var.dims(), &Device::Cpu)? * 0.02)?;
        let w = (var.as_tensor().detach() + noise)?.detach();
        on_dev.insert(name.clone(), w.to_device(dev)?);
        on_cpu.insert(name, w);
    }
    Ok((
        build(VarBuilder::from_tensors(on_cpu, DType::F32, &Device::Cpu))?,
        build(VarBuilder::from_tensors(on_dev, DType::F32, dev))?,
    ))
}

/// Runs `f` on the device: with the generic kernels when the device is the CPU.
fn on_device<R>(dev: &Device, f: impl FnOnce() -> R) -> R {
    if dev.is_cpu() {
        with_generic(f)
    } else {
        f()
    }
}

fn median_secs(dev: &Device, iters: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    dev.synchronize()?;
    let mut t = Vec::new();
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        f()?;
        dev.synchronize()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// DDIM-20 from per-image seeds with a UNet at m = 0 for a fixed random identity.
fn ddim20(unet: &UNet, cfg: &TrainConfig, seeds: &[u64], dev: &Device) -> anyhow::Result<Tensor> {
    let b = seeds.len();
    let ddim = Ddim::new(NoiseSchedule::new(&cfg.schedule)?, 20, 1.0)?;
    let id = NoiseRng::new(99)
        .randn(&[1, cfg.model.condition.id_dim], dev)?
        .broadcast_as((b, cfg.model.condition.id_dim))?
        .contiguous()?;
    let m = Tensor::zeros(b, DType::F32, dev)?;
    let mut rngs: Vec<NoiseRng> = seeds.iter().map(|&s| NoiseRng::new(s)).collect();
    let s = cfg.model.image_size;
    Ok(ddim.sample(
        (3, s, s),
        &mut rngs,
        dev,
        |x, t| unet.forward(x, &Tensor::new(vec![t as u32; b].as_slice(), dev)?, &id, &m),
        |_| ControlFlow::Continue(()),
    )?)
}

/// A trainer's identity encoder, its face source, and what was stood in for (empty when nothing was).
type TrainingInputs = (Arc<dyn IdentityEncoder>, Box<dyn FaceSource>, String);

/// E_id and the face source of a preset's trainer. Where the config's own are not on this machine
/// (paper-112's AdaFace checkpoint and CASIA `.rec`), stand-ins of the same cost: the configured
/// IResNet with seeded random weights, and the DCGAN stream at the preset's size. The third value
/// says what was stood in for (empty when nothing was).
fn training_inputs(
    cfg: &mut TrainConfig,
    assets: &std::path::Path,
    dev: &Device,
) -> anyhow::Result<TrainingInputs> {
    let mut notes = Vec::new();
    let encoder = match (build_encoder(&cfg.encoder, assets, dev), &cfg.encoder) {
        (Ok(e), _) => e,
        (Err(_), EncoderConfig::Iresnet { arch, .. }) => {
            notes.push("E_id with random weights");
            let (_, net) = twin(dev, 9, |vb| IResNet::new(arch.clone(), vb))?;
            Arc::new(IResNetEncoder::new(net, dev))
        }
        (Err(e), _) => return Err(e.into()),
    };
    let source = match build_source(cfg, encoder.clone(), assets, dev) {
        Ok(s) => s,
        Err(_) => {
            notes.push("DCGAN faces");
            cfg.data = DataConfig::Dcgan {
                weights: None,
                min_luma: 0.0,
                min_flip_cos: -1.0,
            };
            build_source(cfg, encoder.clone(), assets, dev)?
        }
    };
    Ok((encoder, source, notes.join(", ")))
}

/// `cemiface device-check`.
pub fn run_device_check(args: DeviceCheckArgs, ctx: &JobCtx) -> anyhow::Result<()> {
    let target = ComputeDevice::select(args.device)?;
    let dev = target.device.clone();
    let mut parity = Vec::new();
    let mut check = |what: String, a: &Tensor, b: &Tensor, tolerance: f64| -> anyhow::Result<()> {
        let rel_diff = rel_diff(a, b)?;
        ctx.log(format!(
            "{what}: relative difference {rel_diff:.2e} (tolerance {tolerance:.0e})"
        ));
        parity.push(Parity {
            what,
            rel_diff,
            tolerance,
            pass: rel_diff <= tolerance,
        });
        Ok(())
    };
    let cpu = Device::Cpu;
    let mut mem = Vec::new();
    if !dev.is_cpu() {
        ctx.phase("memory");
        let preset = args.presets.first().map_or("demo-64", String::as_str);
        let mut cfg = load_config(preset)?;
        let (_, net) = twin(&dev, 1, |vb| UNet::new(cfg.model.clone(), vb))?;
        let mut log = |line: String| ctx.log(line);
        mem.push(memory::unet_forwards(&net, &cfg, preset, 8, &dev, &mut log)?);
        // A training step (backward, AdamW, EMA): where state that outlives a step could keep
        // the step's tensors alive.
        cfg.train.centre_reference = cfg.train.centre_reference.min(64);
        let (encoder, source, _) = training_inputs(&mut cfg, &args.assets.assets_dir, &dev)?;
        let mut trainer = Trainer::new(cfg.clone(), encoder, source, &dev)?;
        let mut step = || -> anyhow::Result<()> {
            trainer.train_step()?;
            Ok(())
        };
        let what = format!("{preset} training step (batch {})", cfg.train.batch_size);
        mem.push(memory::check(what, 24, &dev, &mut step, &mut log)?);
    }
    if args.memory_only {
        return write_report(&args, &target, ctx, &mem, &[], &[]);
    }
    for preset in &args.presets {
        ctx.phase("parity: UNet");
        let cfg = load_config(preset)?;
        let (ref_net, dev_net) = twin(&dev, 1, |vb| UNet::new(cfg.model.clone(), vb))?;
        let s = cfg.model.image_size;
        let x = NoiseRng::new(2).randn(&[2, 3, s, s], &cpu)?;
        let t = Tensor::new(&[50u32, 800], &cpu)?;
        let id = NoiseRng::new(3).randn(&[2, cfg.model.condition.id_dim], &cpu)?;
        let m = Tensor::new(&[0f32, 0.7], &cpu)?;
        let want = ref_net.forward(&x, &t, &id, &m)?;
        let got = on_device(&dev, || -> anyhow::Result<Tensor> {
            Ok(dev_net.forward(
                &x.to_device(&dev)?,
                &t.to_device(&dev)?,
                &id.to_device(&dev)?,
                &m.to_device(&dev)?,
            )?)
        })?;
        check(format!("{preset} UNet forward (batch 2)"), &got, &want, 1e-3)?;
        let want = ddim20(&ref_net, &cfg, &[7], &cpu)?;
        let got = on_device(&dev, || ddim20(&dev_net, &cfg, &[7], &dev))?;
        check(format!("{preset} DDIM-20 sample (seed 7)"), &got, &want, 5e-3)?;
        if !dev.is_cpu() && !device::tf32() {
            // TF32 rounds every matrix product's inputs to 10 mantissa bits: looser, stated apart.
            let got = device::with_tf32(|| ddim20(&dev_net, &cfg, &[7], &dev));
            check(
                format!("{preset} DDIM-20 sample, TF32 (seed 7)"),
                &got?,
                &want,
                5e-2,
            )?;
        }
    }

    ctx.phase("parity: dlib ResNet");
    let manifest = args
        .assets
        .assets_dir
        .join("face-api/face_recognition_model-weights_manifest.json");
    anyhow::ensure!(
        manifest.exists(),
        "{} is missing: run scripts/setup.sh --assets-only",
        manifest.display()
    );
    let ref_dlib = DlibResNet::new(cemiface_engine::tfjs::var_builder(&manifest, &cpu)?)?;
    let dev_dlib = DlibResNet::new(cemiface_engine::tfjs::var_builder(&manifest, &dev)?)?;
    let chips = NoiseRng::new(4)
        .randn(&[4, 3, 150, 150], &cpu)?
        .affine(40.0, 128.0)?;
    let want = ref_dlib.forward(&chips)?;
    let got = on_device(&dev, || -> anyhow::Result<Tensor> {
        Ok(dev_dlib.forward(&chips.to_device(&dev)?)?)
    })?;
    check(
        "dlib ResNet forward (face-api weights, batch 4)".into(),
        &got,
        &want,
        1e-3,
    )?;

    ctx.phase("parity: latent denoiser");
    let GeneratorConfig::Latent(lcfg) = load_generator_config("latent-dcgan")? else {
        anyhow::bail!("the latent-dcgan preset is not a latent config");
    };
    let (ref_den, dev_den) = twin(&dev, 5, |vb| LatentDenoiser::new(lcfg.denoiser.clone(), vb))?;
    let (dz, di) = (lcfg.denoiser.latent_dim, lcfg.denoiser.id_dim);
    let z = NoiseRng::new(6).randn(&[8, dz], &cpu)?;
    let za = NoiseRng::new(7).randn(&[8, dz], &cpu)?;
    let c = NoiseRng::new(8).randn(&[8, di], &cpu)?;
    let t = Tensor::new(&[0u32, 50, 100, 300, 500, 700, 900, 999], &cpu)?;
    let m = Tensor::new(&[-1f32, -0.5, 0., 0.25, 0.5, 0.75, 0.9, 1.], &cpu)?;
    let want = ref_den.forward(&z, &t, &za, &c, &m)?;
    let to = |x: &Tensor| x.to_device(&dev);
    let got = on_device(&dev, || -> anyhow::Result<Tensor> {
        Ok(dev_den.forward(&to(&z)?, &to(&t)?, &to(&za)?, &to(&c)?, &to(&m)?)?)
    })?;
    check(
        "latent-dcgan denoiser forward (batch 8)".into(),
        &got,
        &want,
        1e-4,
    )?;

    let mut speed = Vec::new();
    if !args.no_speed {
        for preset in &args.presets {
            ctx.phase("speed");
            let mut cfg = load_config(preset)?;
            let (_, net) = twin(&dev, 1, |vb| UNet::new(cfg.model.clone(), vb))?;
            let mut row = |what: &str, batch: usize, seconds: f64| {
                ctx.log(format!("{preset} {what} (batch {batch}): {seconds:.3} s"));
                speed.push(Speed {
                    what: what.into(),
                    preset: preset.clone(),
                    batch,
                    seconds,
                    per_second: batch as f64 / seconds,
                });
            };
            row(
                "DDIM-20",
                1,
                median_secs(&dev, args.iters, || ddim20(&net, &cfg, &[1], &dev).map(drop))?,
            );
            let seeds: Vec<u64> = (0..args.batch as u64).collect();
            row(
                "DDIM-20",
                args.batch,
                median_secs(&dev, args.iters, || ddim20(&net, &cfg, &seeds, &dev).map(drop))?,
            );
            if !dev.is_cpu() && !device::tf32() {
                // The same batch with TF32 tensor-core matrix products (`CEMIFACE_TF32=1`).
                let secs = device::with_tf32(|| {
                    median_secs(&dev, args.iters, || ddim20(&net, &cfg, &seeds, &dev).map(drop))
                });
                row("DDIM-20, TF32 (CEMIFACE_TF32=1)", args.batch, secs?);
            }
            // The real trainer; μ from 64 faces (its size does not change a step's cost). A
            // batch that does not fit in the device's memory is halved until one does.
            cfg.train.centre_reference = cfg.train.centre_reference.min(64);
            let configured = cfg.train.batch_size;
            let (secs, notes) = loop {
                let mut run = || -> anyhow::Result<(f64, String)> {
                    let (encoder, source, stand_in) =
                        training_inputs(&mut cfg, &args.assets.assets_dir, &dev)?;
                    let mut trainer = Trainer::new(cfg.clone(), encoder, source, &dev)?;
                    let secs = median_secs(&dev, args.iters, || {
                        trainer.train_step().map(drop).map_err(Into::into)
                    })?;
                    Ok((secs, stand_in))
                };
                match run() {
                    Ok(done) => break done,
                    Err(e) if is_out_of_memory(&e) && cfg.train.batch_size > 1 => {
                        ctx.log(format!(
                            "{preset} training step: batch {} does not fit in the device's memory; trying {}",
                            cfg.train.batch_size,
                            cfg.train.batch_size / 2
                        ));
                        cfg.train.batch_size /= 2;
                    }
                    Err(e) => return Err(e),
                }
            };
            let mut notes: Vec<String> = [notes].into_iter().filter(|n| !n.is_empty()).collect();
            if cfg.train.batch_size < configured {
                notes.push(format!("the configured batch {configured} did not fit"));
            }
            let what = if notes.is_empty() {
                "training step".to_owned()
            } else {
                format!("training step ({})", notes.join("; "))
            };
            row(&what, cfg.train.batch_size, secs);
        }
    }

    write_report(&args, &target, ctx, &mem, &parity, &speed)
}

/// Whether an error is the device running out of memory (then a smaller batch may fit).
fn is_out_of_memory(e: &anyhow::Error) -> bool {
    format!("{e:?}").contains("OUT_OF_MEMORY")
}

/// The tables on stdout (and in `--markdown` / `--json`); an error naming every failed row.
fn write_report(
    args: &DeviceCheckArgs,
    target: &ComputeDevice,
    ctx: &JobCtx,
    mem: &[memory::MemoryCheck],
    parity: &[Parity],
    speed: &[Speed],
) -> anyhow::Result<()> {
    let gpu = target.gpu_info();
    let header = format!(
        "device-check: {} {} against the CPU ({})",
        target,
        gpu.as_ref()
            .map(|g| format!(
                "({}, {:.1} GiB, compute capability {})",
                g.name,
                g.memory_total_bytes as f64 / (1u64 << 30) as f64,
                g.compute_capability
            ))
            .unwrap_or_else(|| "(generic kernels)".into()),
        CpuInfo::detect(),
    );
    let mut md = format!("{header}\n");
    if !parity.is_empty() {
        md += "\n| parity | relative difference | tolerance | |\n|---|---|---|---|\n";
    }
    for p in parity {
        md += &format!(
            "| {} | {:.2e} | {:.0e} | {} |\n",
            p.what,
            p.rel_diff,
            p.tolerance,
            if p.pass { "ok" } else { "FAIL" }
        );
    }
    if !speed.is_empty() {
        md += &format!(
            "\n| speed on {target} | preset | batch | seconds | images/s |\n|---|---|---|---|---|\n"
        );
        for s in speed {
            md += &format!(
                "| {} | {} | {} | {:.3} | {:.2} |\n",
                s.what, s.preset, s.batch, s.seconds, s.per_second
            );
        }
    }
    if !mem.is_empty() {
        md += memory::MemoryCheck::HEADER;
        for m in mem {
            md += &m.markdown();
        }
    }
    crate::out!(ctx, "{md}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &md).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let report = Report {
            device: target.label.clone(),
            gpu,
            cpu: CpuInfo::detect().to_string(),
            memory: mem,
            parity,
            speed,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    let mut failed: Vec<&str> = parity
        .iter()
        .filter(|p| !p.pass)
        .map(|p| p.what.as_str())
        .collect();
    failed.extend(mem.iter().filter(|m| !m.pass).map(|m| m.what.as_str()));
    anyhow::ensure!(failed.is_empty(), "device-check failed: {}", failed.join("; "));
    Ok(())
}
