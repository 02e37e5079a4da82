//! The transposed convolution (the DCGAN decoder's five layers) on the GEMM kernels of
//! [`crate::nn::conv`]: a transposed convolution is the input gradient of the convolution with the
//! same weight, so its forward is that backward (Wᵀ·X, then col2im), its input gradient is that
//! convolution's forward, and its weight gradient (only for a weight that is a variable: the
//! decoder's are frozen) is that convolution's weight gradient with the roles swapped. Candle's own
//! CPU kernel is a direct loop, and its backward always computes the weight gradient.
//!
//! # Shapes
//! `x` (B, Cin, h, w), `weight` (Cin, Cout, k, k) (PyTorch's `ConvTranspose2d` layout) →
//! (B, Cout, (h − 1)·stride − 2·padding + k, (w − 1)·stride − 2·padding + k).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::nn::conv::{backward, forward};
use crate::nn::im2col::Geo;
use crate::nn::kernels::fast_cpu;
use crate::nn::ops::{cpu_f32, with_cpu_f32};

/// `x` through the transposed convolution `weight`: the GEMM op for f32 CPU tensors, Candle's
/// kernel on other devices (see [`crate::nn::kernels`]).
pub fn conv_transpose2d(x: &Tensor, weight: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if fast_cpu(&[x, weight]) {
        x.contiguous()?
            .apply_op2(&weight.contiguous()?, ConvTranspose2dOp { stride, padding })
    } else {
        x.conv_transpose2d(weight, padding, 0, stride, 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct ConvTranspose2dOp {
    stride: usize,
    padding: usize,
}

impl ConvTranspose2dOp {
    /// The geometry of the convolution this op transposes: its input is this op's output.
    fn geo(&self, x: &[usize], w: &[usize]) -> Result<Geo> {
        let ([b, cin, h, wd], [cin2, cout, kh, kw]) = (
            <[usize; 4]>::try_from(x)
                .map_err(|_| candle_core::Error::Msg("conv_transpose2d: input is not 4-D".into()))?,
            <[usize; 4]>::try_from(w)
                .map_err(|_| candle_core::Error::Msg("conv_transpose2d: weight is not 4-D".into()))?,
        );
        let (s, p) = (self.stride, self.padding);
        if cin != cin2
            || s == 0
            || h == 0
            || wd == 0
            || (h - 1) * s + kh <= 2 * p
            || (wd - 1) * s + kw <= 2 * p
        {
            candle_core::bail!(
                "conv_transpose2d: input {x:?} does not fit weight {w:?} (stride {s}, padding {p})"
            );
        }
        Ok(Geo {
            b,
            cin: cout,
            h: (h - 1) * s + kh - 2 * p,
            w: (wd - 1) * s + kw - 2 * p,
            cout: cin,
            kh,
            kw,
            stride: s,
            pad: p,
            oh: h,
            ow: wd,
        })
    }
}

impl CustomOp2 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        "cemiface-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geo(l1.dims(), l2.dims())?;
        let x = cpu_f32(s1, l1, "input")?;
        let w = cpu_f32(s2, l2, "weight")?;
        // The convolution's input gradient for an output gradient x (its input is not read).
        let (y, _) = backward(&[], w, x, &g, false);
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cin, g.h, g.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geo(x.dims(), w.dims())?;
        let need_dw = w.track_op();
        let (dx, dw) = with_cpu_f32(
            "conv_transpose2d",
            &[(x, "input"), (w, "weight"), (dy, "output gradient")],
            |v| {
                let dx = forward(v[2], v[1], None, &g);
                // The weight gradient only for a weight that is a variable (or computed from one).
                Ok((dx, need_dw.then(|| backward(v[2], v[1], v[0], &g, true).1)))
            },
        )?;
        let dw = dw
            .map(|dw| Tensor::from_vec(dw, w.shape(), w.device()))
            .transpose()?;
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), dw))
    }
}
