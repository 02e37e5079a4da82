//! The CemiFace generator: a diffusion model conditioned on an identity embedding C_id and a similarity
//! target m (docs/paper.md §3). The noise schedule and DDIM sampler, the UNet and its blocks, the
//! condition path, the SimMat loss, Algorithm 1 (`trainer`), generation with a trained model
//! (`generator`), and the default latent preset that trains on one CPU (`latent`).

pub mod condition;
pub mod ddim;
pub mod generator;
pub mod latent;
pub mod schedule;
pub mod sim_mat;
pub mod trainer;
pub mod unet;
