//! Exponential moving average of the weights with DCFace's warm-up (`EMAModel(inv_gamma=1, power=3/4,
//! max_value=0.9999)`): decay = clamp(1 − (1 + step)^(−3/4), 0, max). Sampling uses the EMA weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::Result;

/// Shadow copies of the trained variables.
pub struct Ema {
    pub shadow: HashMap<String, Tensor>,
    pub max_decay: f64,
}

impl Ema {
    pub fn new(vars: &[(String, Var)], max_decay: f64) -> Result<Self> {
        let shadow = vars
            .iter()
            // Detached: a shadow that recorded its op would chain every update to the last one and
            // keep them all alive (the generic path's memory grew by the model's size per step).
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Self { shadow, max_decay })
    }

    /// The decay used after `step` optimiser steps.
    pub fn decay(&self, step: u64) -> f64 {
        (1.0 - (1.0 + step as f64).powf(-0.75)).clamp(0.0, self.max_decay)
    }

    /// Saves the shadow weights (safetensors, the variables' own names: loadable as a model).
    pub fn save(&self, path: &Path) -> Result<()> {
        super::save_state(path, &self.shadow)
    }

    /// Restores what [`Ema::save`] wrote; every shadow weight must be present with its shape.
    pub fn load(&mut self, path: &Path, device: &Device) -> Result<()> {
        let t = super::load_state(path, device)?;
        for (name, s) in self.shadow.iter_mut() {
            *s = super::required_state_tensor(&t, name, s.dims(), path)?;
        }
        Ok(())
    }

    /// shadow ← d·shadow + (1 − d)·param.
    pub fn update(&mut self, vars: &[(String, Var)], step: u64) -> Result<()> {
        let d = self.decay(step);
        for (name, var) in vars {
            let s = &self.shadow[name];
            if crate::optim::fused_update::applies(&[s, var.as_tensor()]) {
                crate::optim::fused_update::ema(s, var.as_tensor(), d)?;
                continue;
            }
            let new = ((s.detach() * d)? + (var.as_tensor().detach() * (1.0 - d))?)?.detach();
            if let Some(slot) = self.shadow.get_mut(name) {
                crate::optim::fused_update::assign(slot, new)?;
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
    fn warm_up_then_capped_and_the_shadow_follows() {
        let v = Var::new(&[1f32], &Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), v.clone())];
        let mut ema = Ema::new(&vars, 0.9999).unwrap();
        assert_eq!(ema.decay(0), 0.0);
        assert!((ema.decay(15) - (1.0 - 16f64.powf(-0.75))).abs() < 1e-12);
        assert_eq!(ema.decay(10_000_000_000), 0.9999);
        v.set(&Tensor::new(&[3f32], &Device::Cpu).unwrap()).unwrap();
        ema.update(&vars, 0).unwrap(); // decay 0: copy
        assert_eq!(ema.shadow["w"].to_vec1::<f32>().unwrap(), vec![3.0]);
        v.set(&Tensor::new(&[5f32], &Device::Cpu).unwrap()).unwrap();
        ema.update(&vars, 15).unwrap(); // decay 0.875
        assert!((ema.shadow["w"].to_vec1::<f32>().unwrap()[0] - (3.0 * 0.875 + 5.0 * 0.125)).abs() < 1e-5);
    }
}
