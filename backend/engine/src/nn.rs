//! Network building blocks Candle lacks or does too slowly on the CPU: the 2-D convolution with its
//! own backward, the transposed convolution on the same kernels, GroupNorm, max pooling with an
//! arg-max backward, single-pass ReLU and residual `relu(a + b)`, and small differentiable helpers
//! (strided subsampling, the composed max pooling); `kernels` chooses between their fast CPU
//! kernels and the device-generic path; `stacked` runs a batch of small layers as one GEMM.

pub mod conv;
pub mod conv_transpose;
pub mod depthwise;
pub mod group_norm;
mod im2col;
pub mod kernels;
pub mod max_pool;
pub mod ops;
pub mod relu;
mod stacked;
pub mod vector_math;
mod winograd;
