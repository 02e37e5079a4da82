//! CemiFace in the DCGAN's latent space: the default generator that trains on one CPU.
//!
//! The pixel presets denoise 64×64 or 112×112 images with a UNet (a GPU's work). This preset denoises
//! the DCGAN's 100-d input z instead, and decodes every estimate with the frozen DCGAN G, so its samples
//! are always DCGAN-quality faces and a SimMat sample costs a G and dlib pass (≈ 2 GFLOP) instead of a
//! UNet pass (≈ 34). The science is the paper's: ε̂(z_t, t, C_id, m) with C_sim = Linear(m), trained
//! with L = MSE(ε) + λ·SimMat on centred similarities (`identity::centring`); see docs/latent-generator.md
//! for the recipe and the experiments behind it.
//!
//! - `config`: the preset's TOML (`configs/latent-dcgan.toml`).
//! - `denoiser`: the residual MLP with FiLM conditioning.
//! - `bank`: the seeded reference set (μ and the inquiry anchors) and its teacher pairs.
//! - `inversion`: finding the inquiry's latent z_a from its embedding (photos, any face).
//! - `trainer`: Algorithm 1 in z-space, checkpoints that resume exactly.

pub mod bank;
pub mod config;
pub mod denoiser;
pub mod inversion;
pub mod trainer;
