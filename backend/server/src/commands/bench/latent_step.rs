//! The `latent-dcgan` training step for `cemiface bench`: the real `LatentTrainer::train_step`
//! (MSE on `batch_size` teacher pairs, SimMat on `sim_mat_batch` samples through G and dlib,
//! backward, AdamW, EMA) on random weights and a small random bank, so it needs no assets and
//! costs what a step of the shipped recipe costs. bench/torch_twin.py times the same step.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use cemiface_engine::checkpoint::random_frozen;
use cemiface_engine::data::dcgan::{Dcgan, NZ};
use cemiface_engine::diffusion::latent::bank::Bank;
use cemiface_engine::diffusion::latent::config::LatentConfig;
use cemiface_engine::diffusion::latent::trainer::LatentTrainer;
use cemiface_engine::identity::dlib_resnet::DlibResNet;
use cemiface_engine::identity::encoder::{DlibEncoder, IdentityEncoder};

use crate::commands::diffusion::{load_generator_config, GeneratorConfig};

/// Anchors of the random bank (the step's cost does not depend on it).
const ANCHORS: usize = 64;

/// The preset's latent config (`latent-dcgan`).
pub fn config() -> anyhow::Result<LatentConfig> {
    match load_generator_config("latent-dcgan")? {
        GeneratorConfig::Latent(cfg) => Ok(cfg),
        GeneratorConfig::Pixel(_) => anyhow::bail!("the latent-dcgan preset is not a latent config"),
    }
}

/// A trainer of the preset on random, frozen G and dlib weights and a random bank.
pub fn trainer(cfg: LatentConfig) -> anyhow::Result<LatentTrainer> {
    let dev = Device::Cpu;
    let gan = random_frozen(&dev, |vb| Dcgan::new(vb, &Device::Cpu))?;
    let dlib = random_frozen(&dev, DlibResNet::new)?;
    let encoder: Arc<dyn IdentityEncoder> = Arc::new(DlibEncoder::new(dlib, &dev));
    let k = cfg.bank.mixes;
    let bank = Bank {
        anchor_z: Tensor::randn(0f32, 1., (ANCHORS, NZ), &dev)?,
        anchor_raw: Tensor::randn(0f32, 1., (ANCHORS, encoder.dim()), &dev)?,
        mix_z: Tensor::randn(0f32, 1., (ANCHORS * k, NZ), &dev)?,
        mix_s: (0..ANCHORS * k)
            .map(|j| 1.0 - 1.6 * (j % k) as f32 / k as f32)
            .collect(),
        mixes: k,
    };
    Ok(LatentTrainer::new(cfg, gan, encoder, bank, &dev)?)
}
