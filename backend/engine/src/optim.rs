//! Optimisers and weight averaging: AdamW (the generator), SGD with momentum (face recognition), the
//! EMA of the generator's weights, and the fused in-place CPU updates they share. Each saves and
//! restores its state as safetensors beside a checkpoint so runs resume exactly.

pub mod adamw;
pub mod ema;
pub mod fused_update;
pub mod sgd;
