//! DDIM sampling (Song et al. 2021) as DCFace runs it (docs/paper.md §3.2; diffusers' `scheduling_ddim.py`
//! with `clip_sample=True`, `set_alpha_to_one=True`, "leading" spacing): S steps at t = (S−1)·r … r, 0
//! with r = T / S, stochasticity η (1.0 = DCFace's default), clipped x̂0, and a per-step callback.

use std::ops::ControlFlow;

use candle_core::Tensor;

use crate::diffusion::schedule::NoiseSchedule;
use crate::noise::NoiseRng;
use crate::{Error, Result};

/// Coefficients of one DDIM step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    pub t: usize,
    pub prev: Option<usize>,
    pub alpha_bar: f64,
    pub alpha_bar_prev: f64,
    pub sigma: f64,
}

/// What the callback sees after each step.
pub struct StepInfo<'a> {
    /// 0-based step index.
    pub step: usize,
    /// Number of steps.
    pub steps: usize,
    /// The timestep just denoised.
    pub t: usize,
    /// x_{t_prev} (the new sample).
    pub x: &'a Tensor,
    /// The clipped x̂0 estimate at this step.
    pub x0: &'a Tensor,
}

/// A DDIM sampler over a noise schedule.
#[derive(Debug, Clone)]
pub struct Ddim {
    schedule: NoiseSchedule,
    timesteps: Vec<usize>,
    eta: f64,
    /// x̂0 is clamped to ±clip (1 for images; a few σ for latents).
    clip: f32,
}

impl Ddim {
    /// `steps` in 1..=T; `eta` in [0, 1].
    pub fn new(schedule: NoiseSchedule, steps: usize, eta: f64) -> Result<Self> {
        let t = schedule.len();
        if steps == 0 || steps > t {
            return Err(Error::Config(format!(
                "DDIM steps must be in 1..={t}, got {steps}"
            )));
        }
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::Config(format!("DDIM eta must be in [0, 1], got {eta}")));
        }
        let r = t / steps;
        let timesteps = (0..steps).rev().map(|i| i * r).collect();
        Ok(Self {
            schedule,
            timesteps,
            eta,
            clip: 1.0,
        })
    }

    /// Clamps x̂0 to ±`clip` instead of the images' [−1, 1].
    pub fn with_clip(mut self, clip: f32) -> Self {
        self.clip = clip;
        self
    }

    /// Timesteps in the order they are visited, e.g. [950, 900, …, 0] for 20 steps.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Coefficients of step `i`.
    pub fn coefficients(&self, i: usize) -> StepCoefficients {
        let t = self.timesteps[i];
        let prev = self.timesteps.get(i + 1).copied();
        let ab = self.schedule.alphas_cumprod[t];
        let ab_prev = prev.map_or(1.0, |p| self.schedule.alphas_cumprod[p]);
        let sigma = self.eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
        StepCoefficients {
            t,
            prev,
            alpha_bar: ab,
            alpha_bar_prev: ab_prev,
            sigma,
        }
    }

    /// One update: returns (x_prev, x̂0). `z` is the fresh noise (ignored when σ = 0).
    pub fn step(&self, i: usize, x_t: &Tensor, eps: &Tensor, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.coefficients(i);
        let x0 = ((x_t - (eps * (1.0 - c.alpha_bar).sqrt())?)? / c.alpha_bar.sqrt())?
            .clamp(-self.clip, self.clip)?;
        let dir = (1.0 - c.alpha_bar_prev - c.sigma * c.sigma).max(0.0).sqrt();
        let mut x = ((&x0 * c.alpha_bar_prev.sqrt())? + (eps * dir)?)?;
        if c.sigma > 0.0 {
            x = (x + (z * c.sigma)?)?;
        }
        Ok((x, x0))
    }

    /// Runs the whole chain. `eps_model(x_t, t)` predicts ε for the batch at timestep `t`;
    /// `rngs` holds one generator per image (its seed makes that image reproducible alone); the
    /// callback sees every step in order and may stop early with `ControlFlow::Break`, in which
    /// case the current x̂0 is returned.
    pub fn sample(
        &self,
        shape: (usize, usize, usize),
        rngs: &mut [NoiseRng],
        device: &candle_core::Device,
        mut eps_model: impl FnMut(&Tensor, usize) -> Result<Tensor>,
        mut callback: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Tensor> {
        let noise = |rngs: &mut [NoiseRng]| -> Result<Tensor> {
            let per: Vec<Tensor> = rngs
                .iter_mut()
                .map(|r| r.randn(&[1, shape.0, shape.1, shape.2], device))
                .collect::<Result<_>>()?;
            Ok(Tensor::cat(&per, 0)?)
        };
        let mut x = noise(rngs)?;
        for i in 0..self.timesteps.len() {
            let t = self.timesteps[i];
            let eps = eps_model(&x, t)?;
            let z = if self.eta > 0.0 {
                noise(rngs)?
            } else {
                x.zeros_like()?
            };
            let (next, x0) = self.step(i, &x, &eps, &z)?;
            x = next;
            let info = StepInfo {
                step: i,
                steps: self.timesteps.len(),
                t,
                x: &x,
                x0: &x0,
            };
            if callback(info).is_break() {
                return Ok(x0);
            }
        }
        Ok(x)
    }
}
