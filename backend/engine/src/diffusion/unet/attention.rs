//! guided-diffusion's `AttentionBlock` with `QKVAttentionLegacy` (heads of 64 channels, q and k each
//! scaled by 1/⁴√d, softmax in f32), where condition tokens' keys and values are *prepended* to the
//! image's own (DCFace/CemiFace cross-attention, docs/paper.md §2.1–2.2).
//! Keys: `norm`, `qkv` (1-D conv, C → 3C), `proj_out` (1-D conv, zero-initialised).

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{conv1d, Conv1d, Init, VarBuilder};

use crate::nn::group_norm::GroupNorm;

use crate::diffusion::unet::res_block::norm32;
use crate::Result;

/// The block.
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    norm: GroupNorm,
    qkv: Conv1d,
    proj_out: Conv1d,
    heads: usize,
}

impl AttentionBlock {
    pub fn new(channels: usize, head_channels: usize, vb: VarBuilder) -> Result<Self> {
        if !channels.is_multiple_of(head_channels) {
            return Err(crate::Error::Config(format!(
                "{channels} channels do not split into heads of {head_channels}"
            )));
        }
        let proj_w = vb
            .pp("proj_out")
            .get_with_hints((channels, channels, 1), "weight", Init::Const(0.0))?;
        let proj_b = vb
            .pp("proj_out")
            .get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(Self {
            norm: norm32(channels, vb.pp("norm"))?,
            qkv: conv1d(channels, 3 * channels, 1, Default::default(), vb.pp("qkv"))?,
            proj_out: Conv1d::new(proj_w, Some(proj_b), Default::default()),
            heads: channels / head_channels,
        })
    }

    /// # Shapes
    /// `x`: (B, C, H, W); `cond_kv`: (B, 2C, N) condition tokens laid out per head as
    /// [k(C/heads), v(C/heads)] → (B, C, H, W).
    pub fn forward(&self, x: &Tensor, cond_kv: Option<&Tensor>) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let x = x.reshape((b, c, h * w))?;
        let qkv = self.qkv.forward(&self.norm.forward(&x)?)?; // (B, 3C, T)
        let ch = c / self.heads;
        let qkv = qkv.reshape((b * self.heads, 3 * ch, h * w))?;
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let q = (qkv.narrow(1, 0, ch)? * scale)?;
        let mut k = (qkv.narrow(1, ch, ch)? * scale)?;
        let mut v = qkv.narrow(1, 2 * ch, ch)?;
        if let Some(kv) = cond_kv {
            let n = kv.dim(2)?;
            let kv = kv.reshape((b * self.heads, 2 * ch, n))?;
            k = Tensor::cat(&[(kv.narrow(1, 0, ch)? * scale)?, k], 2)?;
            v = Tensor::cat(&[kv.narrow(1, ch, ch)?, v], 2)?;
        }
        // weights (BH, T, S) = qᵀk, softmax over S in f32
        let wts = q.transpose(1, 2)?.contiguous()?.matmul(&k.contiguous()?)?;
        let wts = candle_nn::ops::softmax(&wts.to_dtype(DType::F32)?, D::Minus1)?.to_dtype(x.dtype())?;
        let a = v.contiguous()?.matmul(&wts.transpose(1, 2)?.contiguous()?)?; // (BH, ch, T)
        let a = a.reshape((b, c, h * w))?;
        let out = (x + self.proj_out.forward(&a)?)?;
        Ok(out.reshape((b, c, h, w))?)
    }
}
