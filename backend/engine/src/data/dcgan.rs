//! The 64×64 face DCGAN of `gan-face-generate` 1.1.1 (the PyTorch DCGAN tutorial generator, trained on
//! DigiFace-1M; see ASSETS.md for its terms), used as an endless, label-free stream of training faces.
//! Keys: `main.{0,3,6,9,12}.weight` (transposed convs), `main.{1,4,7,10}.*` (BatchNorm, eval mode).

use std::path::Path;

use candle_core::{Device, ModuleT, Tensor};
use candle_nn::{batch_norm, conv_transpose2d_no_bias, BatchNorm, ConvTranspose2d, ConvTranspose2dConfig};

use crate::checkpoint;
use crate::noise::NoiseRng;
use crate::{Error, Result};

/// Latent size.
pub const NZ: usize = 100;

/// The generator.
#[derive(Debug, Clone)]
pub struct Dcgan {
    convs: Vec<ConvTranspose2d>,
    norms: Vec<BatchNorm>,
    device: Device,
}

impl Dcgan {
    /// Loads `weights.tar` (a torch zip whose state dict is under `netG_state_dict`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Config(format!(
                "{} is missing (asset group `dcgan-faces`): run scripts/setup.sh",
                path.display()
            )));
        }
        Self::new(
            checkpoint::var_builder(path, Some("netG_state_dict"), device)?,
            device,
        )
    }

    /// The generator from a state dict's variables (keys `main.*`; a `VarMap` gives random ones,
    /// as the benchmark uses).
    pub fn new(vb: candle_nn::VarBuilder, device: &Device) -> Result<Self> {
        let vb = vb.pp("main");
        let widths = [NZ, 512, 256, 128, 64, 3];
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for i in 0..5 {
            let cfg = ConvTranspose2dConfig {
                padding: if i == 0 { 0 } else { 1 },
                stride: if i == 0 { 1 } else { 2 },
                ..Default::default()
            };
            convs.push(conv_transpose2d_no_bias(
                widths[i],
                widths[i + 1],
                4,
                cfg,
                vb.pp(3 * i),
            )?);
            if i < 4 {
                norms.push(batch_norm(widths[i + 1], 1e-5, vb.pp(3 * i + 1))?);
            }
        }
        Ok(Self {
            convs,
            norms,
            device: device.clone(),
        })
    }

    /// Faces in [−1, 1] from latents z: (B, 100) → (B, 3, 64, 64).
    pub fn generate(&self, z: &Tensor) -> Result<Tensor> {
        let mut x = z.reshape((z.dim(0)?, NZ, 1, 1))?;
        for (i, conv) in self.convs.iter().enumerate() {
            let cfg = conv.config();
            x = crate::nn::conv_transpose::conv_transpose2d(&x, conv.weight(), cfg.stride, cfg.padding)?;
            x = match self.norms.get(i) {
                Some(bn) => bn.forward_t(&x, false)?.relu()?,
                None => x.tanh()?,
            };
        }
        Ok(x)
    }

    /// `n` standard-normal latents (n, 100) drawn from `rng`.
    pub fn latents(&self, n: usize, rng: &mut NoiseRng) -> Result<Tensor> {
        rng.randn(&[n, NZ], &self.device)
    }

    /// `n` faces from standard-normal latents drawn from `rng`.
    pub fn sample(&self, n: usize, rng: &mut NoiseRng) -> Result<Tensor> {
        self.generate(&self.latents(n, rng)?)
    }
}

/// Mean luma in [0, 1] of each image of a [−1, 1] batch, (B,).
pub fn mean_luma(x: &Tensor) -> Result<Tensor> {
    let w = Tensor::new(&[0.299f32, 0.587, 0.114], x.device())?.reshape((1, 3, 1, 1))?;
    let y = x.affine(0.5, 0.5)?.broadcast_mul(&w)?.sum(1)?; // (B, H, W)
    Ok(y.mean(2)?.mean(1)?)
}
