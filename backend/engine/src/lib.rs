//! CemiFace-rs engine: all the science of "CemiFace: Center-based Semi-hard Synthetic Face Generation
//! for Face Recognition" (NeurIPS 2024, arXiv:2409.18876) and of DCFace, its code base, in Candle.
//!
//! This crate is deliberately free of any async runtime, web framework or UI code: the server and the
//! CLI drive it, and it builds and tests alone (`cargo test --release -p cemiface-engine`).
//!
//! # Layout
//!
//! Each folder is one concept; read them in the order data flows through the paper:
//!
//! ```text
//! data/         faces in: DCGAN stream, image folders, insightface .rec/.bin, pair lists, image decoding
//! face/         photo → aligned chip: Tiny Face Detector, 68 landmarks, similarity warp
//! identity/     E_id: dlib ResNet, IResNet, MobileFace behind one encoder trait; dlib centring
//! diffusion/    the generator: schedule, DDIM, UNet (+ blocks), condition, SimMat, trainer (Alg. 1),
//!               generator, and latent/ (the default preset: CemiFace in the DCGAN's latent space)
//! synth/        the synthetic data set (Alg. 2): inquiries, sharded generation, its summary
//! recognition/  FR on the synthetic set: IResNet, margins, augmentation, trainer, 10-fold verification
//! report/       charts and the similarity-control report
//! nn/ optim/    building blocks: convolution, GroupNorm, ops; AdamW, SGD, EMA, fused updates
//! tfjs.rs       TensorFlow.js weight manifests (face-api's models), tfjs/ their graph and layers
//! run_dir.rs    a training run's folder: checkpoints, metrics.jsonl, seeded initialisation
//! checkpoint.rs PyTorch-world checkpoints; noise.rs reproducible noise; device.rs CPU / CUDA;
//! assets.rs     the pinned model assets; error.rs the engine's typed errors
//! ```

pub mod assets;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod diffusion;
pub mod error;
pub mod face;
pub mod identity;
pub mod nn;
pub mod noise;
pub mod optim;
pub mod recognition;
pub mod report;
pub mod run_dir;
pub mod synth;
pub mod tfjs;

pub use error::{Error, Result};

/// Version of the engine (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
