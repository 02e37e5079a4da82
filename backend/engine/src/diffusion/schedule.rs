//! The DDPM noise schedule (docs/paper.md §2.3): linear β from 1e-4 to 0.02 over T = 1000 steps,
//! ᾱ_t = ∏(1 − β_s), the forward process q(x_t | x_0) and the one-step x̂0 estimate.
//! Coefficients are kept in f64 and gathered per sample, so a batch can mix timesteps.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Schedule parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Number of diffusion steps T.
    pub steps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
        }
    }
}

/// Precomputed ᾱ and friends.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    pub fn new(cfg: &ScheduleConfig) -> Result<Self> {
        if cfg.steps < 2 || !(0.0 < cfg.beta_start && cfg.beta_start < cfg.beta_end && cfg.beta_end < 1.0) {
            return Err(Error::Config(format!("invalid noise schedule {cfg:?}")));
        }
        let n = cfg.steps;
        let betas: Vec<f64> = (0..n)
            .map(|i| cfg.beta_start + (cfg.beta_end - cfg.beta_start) * i as f64 / (n - 1) as f64)
            .collect();
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        Ok(Self {
            betas,
            alphas_cumprod,
        })
    }

    /// T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// Per-sample coefficient `f(ᾱ_t)` as a (B, 1, 1, 1) tensor for timesteps `t` (B,).
    fn gather(&self, t: &[u32], like: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor> {
        let v: Vec<f32> = t
            .iter()
            .map(|&i| f(self.alphas_cumprod[i as usize]) as f32)
            .collect();
        Ok(Tensor::from_vec(v, (t.len(), 1, 1, 1), like.device())?.to_dtype(like.dtype())?)
    }

    /// x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, per sample.
    pub fn q_sample(&self, x0: &Tensor, t: &[u32], noise: &Tensor) -> Result<Tensor> {
        let a = self.gather(t, x0, f64::sqrt)?;
        let s = self.gather(t, x0, |ab| (1.0 - ab).sqrt())?;
        Ok((x0.broadcast_mul(&a)? + noise.broadcast_mul(&s)?)?)
    }

    /// x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, clipped to [−1, 1] when `clip`.
    pub fn predict_x0(&self, x_t: &Tensor, t: &[u32], eps: &Tensor, clip: bool) -> Result<Tensor> {
        let s = self.gather(t, x_t, |ab| (1.0 - ab).sqrt())?;
        let inv = self.gather(t, x_t, |ab| 1.0 / ab.sqrt())?;
        let x0 = (x_t - eps.broadcast_mul(&s)?)?.broadcast_mul(&inv)?;
        Ok(if clip { x0.clamp(-1f32, 1f32)? } else { x0 })
    }

    /// ε̂ = (x_t − √ᾱ_t·x̂0)/√(1−ᾱ_t), per sample: the ε a x̂0-predicting network implies.
    pub fn predict_eps(&self, x_t: &Tensor, t: &[u32], x0: &Tensor) -> Result<Tensor> {
        let a = self.gather(t, x_t, f64::sqrt)?;
        let inv = self.gather(t, x_t, |ab| 1.0 / (1.0 - ab).sqrt())?;
        Ok((x_t - x0.broadcast_mul(&a)?)?.broadcast_mul(&inv)?)
    }

    /// t / T per sample, as used by the SimMat weighting, (B,).
    pub fn fraction(&self, t: &[u32], device: &candle_core::Device) -> Result<Tensor> {
        let v: Vec<f32> = t.iter().map(|&i| i as f32 / self.len() as f32).collect();
        Ok(Tensor::from_vec(v, t.len(), device)?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn predict_eps_inverts_q_sample_and_predict_x0() {
        let s = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[0.5f32, -1.2, 2.0, 0.1, -0.3, 0.9], &dev)
            .unwrap()
            .reshape((2, 3, 1, 1))
            .unwrap();
        let eps = Tensor::new(&[0.3f32, 0.7, -1.1, -0.4, 1.5, 0.2], &dev)
            .unwrap()
            .reshape((2, 3, 1, 1))
            .unwrap();
        let t = [0u32, 999];
        let x_t = s.q_sample(&x0, &t, &eps).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        // The ε implied by the true x0 is the noise that made x_t, at both ends of the schedule…
        assert!(diff(&s.predict_eps(&x_t, &t, &x0).unwrap(), &eps) < 2e-3);
        // …and predict_x0 of that ε gives x0 back.
        let back = s
            .predict_x0(&x_t, &t, &s.predict_eps(&x_t, &t, &x0).unwrap(), false)
            .unwrap();
        assert!(diff(&back, &x0) < 1e-3);
    }
}
