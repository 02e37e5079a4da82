//! CemiFace-rs engine: all the science of "CemiFace: Center-based Semi-hard Synthetic Face Generation
//! for Face Recognition" (NeurIPS 2024) and of DCFace, its code base, in Candle.
//!
//! This crate is deliberately free of any async runtime, web framework or UI code: the server and the
//! CLI drive it, and it builds and tests alone (`cargo test --release -p cemiface-engine`).

pub mod adamw;
pub mod align;
pub mod assets;
pub mod attention;
pub mod augment;
pub mod checkpoint;
pub mod condition;
pub mod control_report;
pub mod conv;
pub mod data;
pub mod dataset;
pub mod dataset_report;
pub mod dcgan;
pub mod ddim;
pub mod device;
pub mod dlib_resnet;
pub mod ema;
pub mod encoder;
pub mod error;
pub mod face_landmark68;
pub mod fr_train;
pub mod fused_update;
pub mod generator;
pub mod group_norm;
pub mod image_io;
pub mod inquiry;
pub mod insightface_bin;
pub mod identity_mean;
pub mod iresnet;
pub mod labelled;
pub mod latent;
pub mod margin;
pub mod mobileface;
pub mod noise;
pub mod ops;
pub mod pair_list;
pub mod plot;
pub mod recordio;
pub mod res_block;
pub mod schedule;
pub mod sgd;
pub mod sim_mat;
pub mod tfjs;
pub mod tfjs_graph;
pub mod tfjs_layers;
pub mod tiny_face_detector;
pub mod train;
pub mod unet;
pub mod verification;
pub mod warp;

pub use error::{Error, Result};

/// Version of the engine (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
