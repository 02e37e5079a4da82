//! Network building blocks Candle lacks or does too slowly on the CPU: the 2-D convolution with its
//! own backward, GroupNorm, and small differentiable helpers (strided subsampling, max pooling).

pub mod conv;
pub mod group_norm;
pub mod ops;
