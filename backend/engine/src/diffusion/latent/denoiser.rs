//! The latent ε-network: a residual MLP over z with the timestep and the condition entering every
//! block by FiLM (scale and shift of the normalised stream).
//!
//! Condition (the paper's, plus the inquiry's latent): C_id (the centred, L2-normalised identity
//! embedding), C_sim = Linear(m), and z_a, the inquiry's latent (known for DCGAN identities, found by
//! `inversion` for photos), which enters the input beside z_t.
//!
//! Keys: `time.{0,1}`, `sim` (C_sim), `id`, `cond.{0,1}`, `input`, `blocks.N.{film,fc1,fc2}`, `out`.
//!
//! # Shapes
//! z_t, z_a: (B, latent_dim); t: (B,) u32; c_id: (B, id_dim); m: (B,) → ε̂: (B, latent_dim).

use candle_core::{Tensor, D};
use candle_nn::{linear, Linear, Module, VarBuilder};

use super::config::{DenoiserConfig, Prediction};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::unet::timestep_embedding;
use crate::Result;

struct Block {
    film: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// The network.
pub struct LatentDenoiser {
    cfg: DenoiserConfig,
    time: [Linear; 2],
    sim: Linear,
    id: Linear,
    cond: [Linear; 2],
    input: Linear,
    blocks: Vec<Block>,
    out: Linear,
}

/// Per-row normalisation to zero mean and unit variance (LayerNorm without affine).
fn normalise(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let c = x.broadcast_sub(&mean)?;
    let var = c.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(c.broadcast_div(&(var + 1e-5)?.sqrt()?)?)
}

/// A linear layer whose weight and bias start at zero (the last layer of a residual branch).
fn zero_linear(i: usize, o: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((o, i), "weight", candle_nn::Init::Const(0.0))?;
    let b = vb.get_with_hints(o, "bias", candle_nn::Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

impl LatentDenoiser {
    pub fn new(cfg: DenoiserConfig, vb: VarBuilder) -> Result<Self> {
        let (e, h, d) = (cfg.emb_dim, cfg.hidden, cfg.latent_dim);
        let blocks = (0..cfg.blocks)
            .map(|i| {
                let vb = vb.pp("blocks").pp(i);
                Ok(Block {
                    film: zero_linear(e, 2 * h, vb.pp("film"))?,
                    fc1: linear(h, h, vb.pp("fc1"))?,
                    fc2: zero_linear(h, h, vb.pp("fc2"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            time: [linear(e, e, vb.pp("time.0"))?, linear(e, e, vb.pp("time.1"))?],
            sim: linear(1, e, vb.pp("sim"))?,
            id: linear(cfg.id_dim, e, vb.pp("id"))?,
            cond: [linear(3 * e, e, vb.pp("cond.0"))?, linear(e, e, vb.pp("cond.1"))?],
            input: linear(2 * d, h, vb.pp("input"))?,
            blocks,
            out: zero_linear(h, d, vb.pp("out"))?,
            cfg,
        })
    }

    pub fn config(&self) -> &DenoiserConfig {
        &self.cfg
    }

    /// ε̂(z_t, t, z_a, C_id, m).
    pub fn forward(
        &self,
        z_t: &Tensor,
        t: &Tensor,
        z_a: &Tensor,
        c_id: &Tensor,
        m: &Tensor,
    ) -> Result<Tensor> {
        let temb = timestep_embedding(t, self.cfg.emb_dim)?;
        let temb = self.time[1].forward(&self.time[0].forward(&temb)?.silu()?)?;
        let c_sim = self.sim.forward(&m.unsqueeze(1)?)?;
        let c_id = self.id.forward(c_id)?;
        let cond = Tensor::cat(&[temb, c_sim, c_id], 1)?;
        let cond = self.cond[1]
            .forward(&self.cond[0].forward(&cond)?.silu()?)?
            .silu()?;
        let mut h = self.input.forward(&Tensor::cat(&[z_t, z_a], 1)?)?;
        let hd = self.cfg.hidden;
        for b in &self.blocks {
            let film = b.film.forward(&cond)?;
            let (scale, shift) = (film.narrow(1, 0, hd)?, film.narrow(1, hd, hd)?);
            let y = normalise(&h)?
                .broadcast_mul(&(scale + 1.0)?)?
                .broadcast_add(&shift)?;
            let y = b.fc2.forward(&b.fc1.forward(&y.silu()?)?.silu()?)?;
            h = (h + y)?;
        }
        Ok(self.out.forward(&normalise(&h)?.silu()?)?)
    }

    /// (ε̂, x̂0) for z_t at timesteps `t`, whatever the network predicts (`DenoiserConfig::prediction`).
    /// Shapes: z_t, z_a (B, d); c_id (B, D); m (B,).
    pub fn predict(
        &self,
        schedule: &NoiseSchedule,
        z_t: &Tensor,
        t: &[u32],
        z_a: &Tensor,
        c_id: &Tensor,
        m: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, d) = z_t.dims2()?;
        let t_tensor = Tensor::new(t, z_t.device())?;
        let out = self.forward(z_t, &t_tensor, z_a, c_id, m)?;
        let as4 = |x: &Tensor| x.reshape((b, d, 1, 1));
        Ok(match self.cfg.prediction {
            Prediction::Eps => {
                let x0 = schedule
                    .predict_x0(&as4(z_t)?, t, &as4(&out)?, false)?
                    .reshape((b, d))?;
                (out, x0)
            }
            Prediction::X0Residual => {
                let x0 = (z_a + out)?;
                let eps = schedule.predict_eps(&as4(z_t)?, t, &as4(&x0)?)?.reshape((b, d))?;
                (eps, x0)
            }
        })
    }

    /// Parameters of a config (for `model-info`).
    pub fn parameter_count(cfg: &DenoiserConfig) -> usize {
        let (e, h, d, i) = (cfg.emb_dim, cfg.hidden, cfg.latent_dim, cfg.id_dim);
        let lin = |a: usize, b: usize| a * b + b;
        2 * lin(e, e)
            + lin(1, e)
            + lin(i, e)
            + lin(3 * e, e)
            + lin(e, e)
            + lin(2 * d, h)
            + cfg.blocks * (lin(e, 2 * h) + 2 * lin(h, h))
            + lin(h, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn shapes_parameter_count_and_a_zero_start() {
        let cfg = DenoiserConfig {
            latent_dim: 10,
            id_dim: 6,
            hidden: 16,
            blocks: 2,
            emb_dim: 8,
            prediction: Default::default(),
        };
        let vm = VarMap::new();
        let net = LatentDenoiser::new(
            cfg.clone(),
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let n: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(n, LatentDenoiser::parameter_count(&cfg));
        let dev = Device::Cpu;
        let z = Tensor::randn(0f32, 1.0, (3, 10), &dev).unwrap();
        let c = Tensor::randn(0f32, 1.0, (3, 6), &dev).unwrap();
        let t = Tensor::new(&[0u32, 500, 999], &dev).unwrap();
        let m = Tensor::new(&[-1f32, 0.0, 1.0], &dev).unwrap();
        let eps = net.forward(&z, &t, &z, &c, &m).unwrap();
        assert_eq!(eps.dims(), &[3, 10]);
        // The output layer starts at zero, so an untrained network predicts ε̂ = 0.
        assert_eq!(
            eps.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(),
            0.0
        );
    }
}
