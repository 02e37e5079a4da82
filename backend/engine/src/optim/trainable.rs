//! A network's trainable variables together with what trains them: AdamW, and the EMA of the
//! weights that sampling uses. Both generator trainers (the pixel UNet and the latent denoiser) hold
//! one; in a checkpoint folder it is `model.safetensors` (the raw weights, under the network's own
//! names), `ema.safetensors` (the same names) and `optimizer.safetensors`.

use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

use super::adamw::{AdamW, AdamWConfig};
use super::ema::Ema;
use crate::run_dir::{load_vars, save_vars, seeded_init};
use crate::Result;

/// Variables, optimiser and EMA of one network.
pub struct Trainable {
    pub varmap: VarMap,
    /// The variables by name, sorted (the order every pass over them uses).
    pub vars: Vec<(String, Var)>,
    pub opt: AdamW,
    pub ema: Ema,
}

impl Trainable {
    /// Builds a network on fresh variables with `build`, re-draws them from `seed` (so a run's
    /// start is a function of its seed alone), and sets up AdamW and the EMA.
    pub fn new<N>(
        build: impl FnOnce(VarBuilder<'static>) -> Result<N>,
        device: &Device,
        seed: u64,
        opt: AdamWConfig,
        ema_max_decay: f64,
    ) -> Result<(N, Self)> {
        let varmap = VarMap::new();
        let net = build(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        seeded_init(&vars, seed)?;
        let opt = AdamW::new(vars.clone(), opt)?;
        let ema = Ema::new(&vars, ema_max_decay)?;
        Ok((
            net,
            Self {
                varmap,
                vars,
                opt,
                ema,
            },
        ))
    }

    pub fn parameter_count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// One AdamW step on `grads`, then the EMA update for training step `step`; returns the
    /// gradient norm (before clipping).
    pub fn step(&mut self, grads: &GradStore, step: u64) -> Result<f64> {
        let grad_norm = self.opt.step(grads)?;
        self.ema.update(&self.vars, step)?;
        Ok(grad_norm)
    }

    /// Writes the three weight files into a checkpoint folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_vars(&self.varmap, &dir.join("model.safetensors"))?;
        self.ema.save(&dir.join("ema.safetensors"))?;
        self.opt.save(&dir.join("optimizer.safetensors"))
    }

    /// Restores what [`Trainable::save`] wrote.
    pub fn load(&mut self, dir: &Path, device: &Device) -> Result<()> {
        load_vars(&mut self.varmap, &dir.join("model.safetensors"))?;
        self.ema.load(&dir.join("ema.safetensors"), device)?;
        self.opt.load(&dir.join("optimizer.safetensors"))
    }
}
