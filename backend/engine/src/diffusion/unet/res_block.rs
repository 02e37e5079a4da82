//! guided-diffusion's `ResBlock` (`unet.py`): GroupNorm → SiLU → conv, time conditioning by AdaGN
//! scale-shift (`use_scale_shift_norm`), optional 2× down (average pool) or up (nearest) resampling
//! inside the block (`resblock_updown`), zero-initialised output conv, 1×1 skip when widths differ.
//! Keys: `in_layers.{0,2}`, `emb_layers.1`, `out_layers.{0,3}`, `skip_connection`.

use candle_core::{Module, Tensor};
use candle_nn::{conv2d, linear, Conv2dConfig, Init, Linear, VarBuilder};

use crate::nn::conv::Conv2d;
use crate::nn::group_norm::GroupNorm;

use crate::Result;

/// Resampling inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    None,
    Down,
    Up,
}

/// GroupNorm(32) as guided-diffusion's `normalization()`.
pub fn norm32(channels: usize, vb: VarBuilder) -> Result<GroupNorm> {
    Ok(GroupNorm::new(32.min(channels), channels, 1e-5, vb)?)
}

/// A conv whose weights start at zero when trained from scratch (`zero_module`).
pub fn zero_conv(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        ..Default::default()
    };
    let w = vb.get_with_hints((cout, cin, k, k), "weight", Init::Const(0.0))?;
    let b = vb.get_with_hints(cout, "bias", Init::Const(0.0))?;
    Ok(candle_nn::Conv2d::new(w, Some(b), cfg).into())
}

pub(crate) fn conv3(cin: usize, cout: usize, vb: VarBuilder) -> Result<Conv2d> {
    Ok(conv2d(
        cin,
        cout,
        3,
        Conv2dConfig {
            padding: 1,
            ..Default::default()
        },
        vb,
    )?
    .into())
}

/// The block.
#[derive(Debug, Clone)]
pub struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv2d,
    emb: Linear,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    skip: Option<Conv2d>,
    resample: Resample,
}

impl ResBlock {
    pub fn new(cin: usize, cout: usize, emb_dim: usize, resample: Resample, vb: VarBuilder) -> Result<Self> {
        let skip = if cin == cout {
            None
        } else {
            Some(conv2d(cin, cout, 1, Default::default(), vb.pp("skip_connection"))?.into())
        };
        Ok(Self {
            in_norm: norm32(cin, vb.pp("in_layers").pp(0))?,
            in_conv: conv3(cin, cout, vb.pp("in_layers").pp(2))?,
            emb: linear(emb_dim, 2 * cout, vb.pp("emb_layers").pp(1))?,
            out_norm: norm32(cout, vb.pp("out_layers").pp(0))?,
            out_conv: zero_conv(cout, cout, 3, vb.pp("out_layers").pp(3))?,
            skip,
            resample,
        })
    }

    fn resample(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.resample {
            Resample::None => Ok(x.clone()),
            Resample::Down => x.avg_pool2d(2),
            Resample::Up => {
                let (_, _, h, w) = x.dims4()?;
                x.upsample_nearest2d(2 * h, 2 * w)
            }
        }
    }

    /// # Shapes
    /// `x`: (B, cin, H, W), `emb`: (B, emb_dim) → (B, cout, H', W') with H' = H/2, H or 2H.
    pub fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self.in_norm.forward_fused(x, None, true)?;
        let h = self.in_conv.forward(&self.resample(&h)?)?;
        let x = self.resample(x)?;
        let e = self.emb.forward(&emb.silu()?)?; // (B, 2C): AdaGN scale and shift
        let c = e.dim(1)? / 2;
        let (scale, shift) = (e.narrow(1, 0, c)?, e.narrow(1, c, c)?);
        let h = self.out_norm.forward_fused(&h, Some((&scale, &shift)), true)?;
        let h = self.out_conv.forward(&h)?;
        let skip = match &self.skip {
            Some(s) => s.forward(&x)?,
            None => x,
        };
        Ok((skip + h)?)
    }
}
