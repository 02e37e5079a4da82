//! SGD with momentum and L2 weight decay in PyTorch's formulation (the FR recipe of docs/paper.md §4.1:
//! momentum 0.9, weight decay 5e-4, lr 0.1 decayed ×0.1 at given epochs), with state that saves and
//! restores so a resumed run continues exactly.
//!
//! Per variable p with gradient g: g ← g + wd·p; buf ← μ·buf + g (buf = g at the first step);
//! p ← p − lr·buf.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Hyper-parameters and the step-decay schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    pub lr: f64,
    #[serde(default = "momentum")]
    pub momentum: f64,
    #[serde(default = "weight_decay")]
    pub weight_decay: f64,
    /// Epochs (counted from 0) at whose start the learning rate is multiplied by `gamma`.
    #[serde(default)]
    pub milestones: Vec<usize>,
    #[serde(default = "gamma")]
    pub gamma: f64,
    /// Linear warm-up over this many steps (0 = none).
    #[serde(default)]
    pub warmup_steps: u64,
}

fn momentum() -> f64 {
    0.9
}
fn weight_decay() -> f64 {
    5e-4
}
fn gamma() -> f64 {
    0.1
}

impl SgdConfig {
    /// The learning rate at `epoch` (0-based) and global `step`.
    pub fn lr_at(&self, epoch: usize, step: u64) -> f64 {
        let decays = self.milestones.iter().filter(|&&m| epoch >= m).count();
        let warm = if step < self.warmup_steps {
            (step + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        self.lr * self.gamma.powi(decays as i32) * warm
    }
}

/// The optimiser over named variables (variables without a gradient, e.g. BatchNorm running
/// statistics, are left alone).
pub struct Sgd {
    cfg: SgdConfig,
    vars: Vec<(String, Var)>,
    buf: HashMap<String, Tensor>,
}

impl Sgd {
    pub fn new(vars: Vec<(String, Var)>, cfg: SgdConfig) -> Self {
        Self {
            cfg,
            vars,
            buf: HashMap::new(),
        }
    }

    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }

    /// One update at learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        let (mu, wd) = (self.cfg.momentum, self.cfg.weight_decay);
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var) else { continue };
            // Detached: the momentum buffer must not record ops (see `AdamW::step`).
            let g = (g.detach() + (var.as_tensor().detach() * wd)?)?;
            let b = match self.buf.get(name) {
                Some(b) if mu > 0.0 => ((b.detach() * mu)? + &g)?.detach(),
                _ => g,
            };
            var.set(&(var.as_tensor().detach() - (&b * lr)?)?)?;
            if mu > 0.0 {
                self.buf.insert(name.clone(), b);
            }
        }
        Ok(())
    }

    /// Saves the momentum buffers (safetensors, keys `buf.<name>`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let t: HashMap<String, Tensor> = self
            .buf
            .iter()
            .map(|(k, v)| (format!("buf.{k}"), v.clone()))
            .collect();
        super::save_state(path, &t)
    }

    /// Restores what [`Sgd::save`] wrote (a variable without a buffer has not moved yet).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let t = super::load_state(path, &dev)?;
        self.buf.clear();
        for (name, var) in &self.vars {
            if let Some(b) = super::state_tensor(&t, &format!("buf.{name}"), var.dims(), path)? {
                self.buf.insert(name.clone(), b);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_pytorch_sgd_by_hand_and_the_schedule_steps_down() {
        // loss = sum(p²)/2 → g = p. PyTorch SGD(lr=0.1, momentum=0.9, weight_decay=0.5) on p = 1:
        // step 1: g = 1 + 0.5 = 1.5, buf = 1.5, p = 1 − 0.15 = 0.85
        // step 2: g = 0.85 + 0.425 = 1.275, buf = 1.35 + 1.275 = 2.625, p = 0.85 − 0.2625 = 0.5875
        let p = Var::new(&[1.0f64], &Device::Cpu).unwrap();
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.5,
            milestones: vec![2, 4],
            gamma: 0.1,
            warmup_steps: 0,
        };
        let mut opt = Sgd::new(vec![("p".into(), p.clone())], cfg.clone());
        for expect in [0.85, 0.5875] {
            let loss = (p.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            opt.step(&loss.backward().unwrap(), 0.1).unwrap();
            let v = p.as_tensor().to_vec1::<f64>().unwrap()[0];
            assert!((v - expect).abs() < 1e-12, "{v} vs {expect}");
        }
        let dir = std::env::temp_dir().join(format!("cemiface-sgd-{}.safetensors", std::process::id()));
        opt.save(&dir).unwrap();
        let mut other = Sgd::new(vec![("p".into(), p.clone())], cfg.clone());
        other.load(&dir).unwrap();
        assert_eq!(other.buf["p"].to_vec1::<f64>().unwrap(), vec![2.625]);
        let lrs: Vec<f64> = [0, 1, 2, 3, 4, 9].iter().map(|&e| cfg.lr_at(e, 1000)).collect();
        let want = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        assert!(
            lrs.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{lrs:?}"
        );
        let warm = SgdConfig {
            warmup_steps: 10,
            ..cfg
        };
        assert!((warm.lr_at(0, 4) - 0.05).abs() < 1e-12);
    }
}
