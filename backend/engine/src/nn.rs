//! Network building blocks Candle lacks or does too slowly on the CPU: the 2-D convolution with its
//! own backward, GroupNorm, and small differentiable helpers (strided subsampling, max pooling);
//! `kernels` chooses between their fast CPU kernels and the device-generic path.

pub mod conv;
pub mod group_norm;
pub mod kernels;
pub mod ops;
