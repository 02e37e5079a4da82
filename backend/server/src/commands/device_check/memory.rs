//! The memory rows of `cemiface device-check`: GPU memory in use must stay flat over repeated
//! UNet forwards and training steps. State that outlives a step and records its op keeps the step's
//! tensors alive (seen on an H200: the generic path's EMA shadow did, and demo-64 training ran out
//! of 141 GiB after ~55 steps); such a leak fails here in seconds, with the numbers.

use candle_core::{Device, Tensor};
use cemiface_engine::device;
use cemiface_engine::diffusion::trainer::TrainConfig;
use cemiface_engine::diffusion::unet::UNet;
use cemiface_engine::noise::NoiseRng;
use serde::Serialize;

/// What the memory check measured.
#[derive(Debug, Serialize)]
pub struct MemoryCheck {
    pub what: String,
    /// GPU memory in use (MiB, whole GPU) after each run and a synchronize.
    pub used_mib: Vec<f64>,
    /// In use after the last run minus after the middle one.
    pub growth_mib: f64,
    pub tolerance_mib: f64,
    pub pass: bool,
    /// An error the CUDA library recorded instead of returning (e.g. from a free), if any.
    pub deferred_error: Option<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `step` `times` times on `dev` (a synchronize after each) and checks that memory in use
/// grows by at most 256 MiB over the second half of the runs (the first ones load kernels and fill
/// caches). Stops early once it has grown by 16 GiB.
pub fn check(
    what: String,
    times: usize,
    dev: &Device,
    step: &mut dyn FnMut() -> anyhow::Result<()>,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<MemoryCheck> {
    let mut used_mib = Vec::new();
    let mut deferred_error = device::gpu_deferred_error(dev);
    for i in 0..times.max(3) {
        step()?;
        let used = device::gpu_memory_used(dev).unwrap_or(0) as f64 / MIB;
        used_mib.push(used);
        log(format!("memory: {what}, {}: {used:.0} MiB in use", i + 1));
        if deferred_error.is_none() {
            deferred_error = device::gpu_deferred_error(dev);
        }
        if used - used_mib[0] > 16384.0 {
            break;
        }
    }
    let growth_mib = growth_over_second_half(&used_mib);
    let tolerance_mib = 256.0;
    Ok(MemoryCheck {
        what: format!("{what} × {}", used_mib.len()),
        growth_mib,
        tolerance_mib,
        pass: growth_mib <= tolerance_mib && deferred_error.is_none(),
        deferred_error,
        used_mib,
    })
}

/// Memory in use after the last run minus after the middle one (the first runs load kernels and
/// fill caches: growth there is not a leak).
fn growth_over_second_half(used_mib: &[f64]) -> f64 {
    match used_mib {
        [] => 0.0,
        _ => used_mib[used_mib.len() - 1] - used_mib[(used_mib.len() - 1) / 2],
    }
}

/// UNet forwards at `batch` (no gradients): what sampling does 20 times per image.
pub fn unet_forwards(
    net: &UNet,
    cfg: &TrainConfig,
    preset: &str,
    batch: usize,
    dev: &Device,
    log: &mut dyn FnMut(String),
) -> anyhow::Result<MemoryCheck> {
    let s = cfg.model.image_size;
    let x = NoiseRng::new(2).randn(&[batch, 3, s, s], dev)?;
    let t = Tensor::new(vec![500u32; batch].as_slice(), dev)?;
    let id = NoiseRng::new(3).randn(&[batch, cfg.model.condition.id_dim], dev)?;
    let m = Tensor::zeros(batch, candle_core::DType::F32, dev)?;
    let mut step = || -> anyhow::Result<()> {
        drop(net.forward(&x, &t, &id, &m)?);
        Ok(())
    };
    check(
        format!("{preset} UNet forward (batch {batch})"),
        12,
        dev,
        &mut step,
        log,
    )
}

impl MemoryCheck {
    /// The header of the markdown table.
    pub const HEADER: &'static str = "\n| memory | growth over the second half | tolerance | in use (MiB, after each) | deferred CUDA error | |\n|---|---|---|---|---|---|\n";

    /// This check's row of the markdown table.
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {:.0} MiB | {:.0} MiB | {} | {} | {} |\n",
            self.what,
            self.growth_mib,
            self.tolerance_mib,
            self.used_mib
                .iter()
                .map(|u| format!("{u:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            self.deferred_error.as_deref().unwrap_or("none"),
            if self.pass { "ok" } else { "FAIL" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_counts_the_second_half_only() {
        // Warm-up growth (100 → 600) is not counted; a steady leak of 10 MiB per run is.
        assert_eq!(growth_over_second_half(&[100.0, 500.0, 600.0, 600.0, 600.0]), 0.0);
        assert_eq!(
            growth_over_second_half(&[100.0, 500.0, 600.0, 610.0, 620.0]),
            20.0
        );
        assert_eq!(growth_over_second_half(&[663.0]), 0.0);
        assert_eq!(growth_over_second_half(&[]), 0.0);
        let row = MemoryCheck {
            what: "x".into(),
            used_mib: vec![1.0, 2.0],
            growth_mib: 300.0,
            tolerance_mib: 256.0,
            pass: false,
            deferred_error: None,
        };
        assert!(
            row.markdown()
                .ends_with("| 300 MiB | 256 MiB | 1 2 | none | FAIL |\n"),
            "{}",
            row.markdown()
        );
    }
}
