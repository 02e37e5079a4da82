//! `cemiface bench`: UNet forward, forward + backward and DDIM-step times of a preset, as a table.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::ddim::Ddim;
use cemiface_engine::schedule::NoiseSchedule;
use cemiface_engine::unet::UNet;
use clap::Args;

use crate::diffusion_cli::load_config;

/// Options of `cemiface bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A preset (demo-64, paper-112) or a TOML config file.
    #[arg(default_value = "demo-64")]
    pub config: String,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batches: Vec<usize>,
    /// Timed repetitions per row (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
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

/// `cemiface bench`.
pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let unet = UNet::new(cfg.model.clone(), VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
    let ddim = Ddim::new(NoiseSchedule::new(&cfg.schedule)?, 20, 1.0)?;
    let (s, d) = (cfg.model.image_size, cfg.model.condition.id_dim);
    println!(
        "{} on {} CPU thread(s) (RAYON_NUM_THREADS), median of {}:",
        args.config,
        candle_core::utils::get_num_threads(),
        args.iters
    );
    println!("| what | batch | seconds | images/s |\n|---|---|---|---|");
    for &b in &args.batches {
        let x = Tensor::randn(0f32, 1., (b, 3, s, s), &dev)?;
        let t = Tensor::new(vec![500u32; b].as_slice(), &dev)?;
        let id = Tensor::randn(0f32, 1., (b, d), &dev)?;
        let m = Tensor::zeros(b, DType::F32, &dev)?;
        let fwd = median_secs(args.iters, || Ok(unet.forward(&x, &t, &id, &m).map(drop)?))?;
        let bwd = median_secs(args.iters, || {
            let loss = unet.forward(&x, &t, &id, &m)?.sqr()?.mean_all()?;
            loss.backward()?;
            Ok(())
        })?;
        let z = x.zeros_like()?;
        let step = median_secs(args.iters, || {
            let eps = unet.forward(&x, &t, &id, &m)?;
            ddim.step(10, &x, &eps, &z)?;
            Ok(())
        })?;
        for (what, sec) in [("forward", fwd), ("forward + backward", bwd), ("DDIM step", step)] {
            println!("| {what} | {b} | {sec:.3} | {:.2} |", b as f64 / sec);
        }
    }
    Ok(())
}
