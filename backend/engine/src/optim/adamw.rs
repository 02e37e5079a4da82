//! AdamW (Loshchilov & Hutter, PyTorch's formulation) with global-norm gradient clipping and state
//! that can be saved and restored, so a resumed run continues exactly.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    pub lr: f64,
    #[serde(default = "b1")]
    pub beta1: f64,
    #[serde(default = "b2")]
    pub beta2: f64,
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default = "wd")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0 = off).
    #[serde(default = "clip")]
    pub grad_clip: f64,
}

fn b1() -> f64 {
    0.9
}
fn b2() -> f64 {
    0.999
}
fn eps() -> f64 {
    1e-8
}
fn wd() -> f64 {
    0.01
}
fn clip() -> f64 {
    1.0
}

/// The optimiser over named variables.
pub struct AdamW {
    cfg: AdamWConfig,
    vars: Vec<(String, Var)>,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    step: u64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let mut m = HashMap::new();
        let mut v = HashMap::new();
        for (name, var) in &vars {
            m.insert(name.clone(), var.zeros_like()?);
            v.insert(name.clone(), var.zeros_like()?);
        }
        Ok(Self {
            cfg,
            vars,
            m,
            v,
            step: 0,
        })
    }

    /// One update from `grads`; returns the global gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore) -> Result<f64> {
        let mut sq = 0.0;
        for (_, var) in &self.vars {
            if let Some(g) = grads.get(var) {
                sq += g
                    .sqr()?
                    .sum_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
            }
        }
        let norm = sq.sqrt();
        let scale = if self.cfg.grad_clip > 0.0 && norm > self.cfg.grad_clip {
            self.cfg.grad_clip / norm
        } else {
            1.0
        };
        self.step += 1;
        let c = &self.cfg;
        let (bc1, bc2) = (
            1.0 - c.beta1.powi(self.step as i32),
            1.0 - c.beta2.powi(self.step as i32),
        );
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var) else { continue };
            let (m, v) = (&self.m[name], &self.v[name]);
            if crate::optim::fused_update::applies(&[var.as_tensor(), g, m, v]) {
                crate::optim::fused_update::adamw(
                    var.as_tensor(),
                    g,
                    m,
                    v,
                    (c.beta1, c.beta2, c.eps),
                    (bc1, bc2),
                    (c.lr, c.weight_decay, scale),
                )?;
                continue;
            }
            // Detached throughout: optimiser state must never record ops (a recorded m or v
            // would keep every earlier step's tensors alive through its graph).
            let g = (g.detach() * scale)?;
            let m = ((self.m[name].detach() * c.beta1)? + (&g * (1.0 - c.beta1))?)?.detach();
            let v = ((self.v[name].detach() * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?.detach();
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let decayed = (var.as_tensor().detach() * (1.0 - c.lr * c.weight_decay))?;
            var.set(&(decayed - (update * c.lr)?)?)?;
            if let Some(slot) = self.m.get_mut(name) {
                crate::optim::fused_update::assign(slot, m)?;
            }
            if let Some(slot) = self.v.get_mut(name) {
                crate::optim::fused_update::assign(slot, v)?;
            }
        }
        Ok(norm)
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    pub fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    /// Saves the moment estimates (safetensors, keys `m.<name>`, `v.<name>`) and the step count.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t: HashMap<String, Tensor> = HashMap::new();
        for (name, _) in &self.vars {
            t.insert(format!("m.{name}"), self.m[name].clone());
            t.insert(format!("v.{name}"), self.v[name].clone());
        }
        t.insert(
            "step".into(),
            Tensor::new(&[self.step as f64], &candle_core::Device::Cpu)?,
        );
        super::save_state(path, &t)
    }

    /// Restores what [`AdamW::save`] wrote; every variable must be present with its shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .vars
            .first()
            .map(|(_, v)| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let t = super::load_state(path, &dev)?;
        for (name, var) in &self.vars {
            for (key, map) in [
                (format!("m.{name}"), &mut self.m),
                (format!("v.{name}"), &mut self.v),
            ] {
                map.insert(
                    name.clone(),
                    super::required_state_tensor(&t, &key, var.dims(), path)?,
                );
            }
        }
        let step = t.get("step").ok_or_else(|| Error::Format {
            path: path.into(),
            message: "optimizer state lacks `step`".into(),
        })?;
        self.step = step.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_steps_match_pytorch_adamw_by_hand() {
        // One scalar p = 1 with loss p²: g = 2p. PyTorch AdamW (lr 0.1, wd 0.01): step 1 moves p by
        // lr·wd·p + lr·(m̂ / (√v̂ + ε)) = 0.001 + 0.1 → 0.899.
        let var = Var::new(&[1f64], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            grad_clip: 0.0,
        };
        let mut opt = AdamW::new(vec![("p".into(), var.clone())], cfg).unwrap();
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        let norm = opt.step(&loss.backward().unwrap()).unwrap();
        assert!((norm - 2.0).abs() < 1e-12);
        let p = var.as_tensor().to_vec1::<f64>().unwrap()[0];
        assert!((p - 0.899).abs() < 1e-9, "{p}");
    }

    #[test]
    fn clipping_limits_the_global_norm_and_state_round_trips() {
        let dev = Device::Cpu;
        let var = Var::new(&[3f64, 4.], &dev).unwrap();
        let cfg = AdamWConfig {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            grad_clip: 1.0,
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], cfg.clone()).unwrap();
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        assert!((opt.step(&loss.backward().unwrap()).unwrap() - 10.0).abs() < 1e-9);
        let path = std::env::temp_dir().join(format!("cemiface-adamw-{}.safetensors", std::process::id()));
        opt.save(&path).unwrap();
        let var2 = Var::new(var.as_tensor().to_vec1::<f64>().unwrap().as_slice(), &dev).unwrap();
        let mut opt2 = AdamW::new(vec![("w".into(), var2.clone())], cfg).unwrap();
        opt2.load(&path).unwrap();
        assert_eq!(opt2.steps_taken(), 1);
        for (o, v) in [(&mut opt, &var), (&mut opt2, &var2)] {
            let l = v.as_tensor().sqr().unwrap().sum_all().unwrap();
            o.step(&l.backward().unwrap()).unwrap();
        }
        assert_eq!(
            var.as_tensor().to_vec1::<f64>().unwrap(),
            var2.as_tensor().to_vec1::<f64>().unwrap()
        );
    }
}
