//! CemiFace's condition path (docs/paper.md §2.2, Eqs. 5–8): C_id = E_id(x) (L2-normalised, any width),
//! C_sim = F1(m) (linear in the scalar similarity target), C_att = F2(cat(C_id, C_sim)) reshaped into
//! `tokens` condition tokens whose channels are each attention head's [k, v] (2 × attention width),
//! prepended to the image's own keys and values in every attention block.
//! Keys: `cond.sim_proj`, `cond.att_proj`.

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Widths of the condition path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Width of C_id: 128 for dlib's network, 512 for IR-50.
    pub id_dim: usize,
    /// Width of C_sim.
    pub sim_dim: usize,
    /// Number of condition tokens.
    pub tokens: usize,
}

impl Default for ConditionConfig {
    fn default() -> Self {
        Self {
            id_dim: 512,
            sim_dim: 512,
            tokens: 1,
        }
    }
}

/// F1 and F2.
#[derive(Debug, Clone)]
pub struct Condition {
    sim_proj: Linear,
    att_proj: Linear,
    tokens: usize,
    kv_width: usize,
}

impl Condition {
    /// `attn_channels`: width of the attention blocks the tokens feed.
    pub fn new(cfg: &ConditionConfig, attn_channels: usize, vb: VarBuilder) -> Result<Self> {
        let kv_width = 2 * attn_channels;
        Ok(Self {
            sim_proj: linear(1, cfg.sim_dim, vb.pp("sim_proj"))?,
            att_proj: linear(cfg.id_dim + cfg.sim_dim, cfg.tokens * kv_width, vb.pp("att_proj"))?,
            tokens: cfg.tokens,
            kv_width,
        })
    }

    /// # Shapes
    /// `c_id`: (B, id_dim), `m`: (B,) → K/V tokens (B, 2·attn_channels, tokens).
    pub fn forward(&self, c_id: &Tensor, m: &Tensor) -> Result<Tensor> {
        let b = c_id.dim(0)?;
        let c_sim = self
            .sim_proj
            .forward(&m.reshape((b, 1))?.to_dtype(c_id.dtype())?)?;
        let c_att = self.att_proj.forward(&Tensor::cat(&[c_id, &c_sim], 1)?)?;
        Ok(c_att
            .reshape((b, self.tokens, self.kv_width))?
            .transpose(1, 2)?
            .contiguous()?)
    }
}
