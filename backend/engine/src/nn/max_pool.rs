//! k×k max pooling with stride 2 and no padding (dlib's stem: 3×3 over 73×73 → 35×35), as one
//! CPU kernel with an arg-max backward. The generic path ([`crate::nn::ops::max_pool_s2_composed`]:
//! k² strided views and `maximum`) allocates and back-propagates through every view: at batch 8 its
//! backward was ≈ 16× its forward and a third of dlib's whole backward pass.
//!
//! # Shapes
//! (B, C, H, W) → (B, C, (H − k)/2 + 1, (W − k)/2 + 1).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::nn::kernels::fast_cpu;
use crate::nn::ops::{cpu_f32, max_pool_s2_composed, with_cpu_f32};

/// Max pooling over k×k windows with stride 2: the fast CPU op for f32 CPU tensors, the composed
/// ops elsewhere (see [`crate::nn::kernels`]).
pub fn max_pool_s2(x: &Tensor, k: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if k == 0 || h < k || w < k {
        candle_core::bail!("max pool: a {k}×{k} window does not fit a {h}×{w} input");
    }
    if fast_cpu(&[x]) {
        x.contiguous()?.apply_op1(MaxPoolS2 { k })
    } else {
        max_pool_s2_composed(x, k)
    }
}

#[derive(Debug, Clone, Copy)]
struct MaxPoolS2 {
    k: usize,
}

impl MaxPoolS2 {
    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        ((h - self.k) / 2 + 1, (w - self.k) / 2 + 1)
    }

    /// Index (within its plane) of the first maximum of output pixel (oy, ox)'s window, scanning
    /// rows then columns (the order the composed version's `maximum` chain keeps).
    fn arg_max(&self, plane: &[f32], w: usize, oy: usize, ox: usize) -> usize {
        let first = 2 * oy * w + 2 * ox;
        let (mut best, mut at) = (plane[first], first);
        for i in 0..self.k {
            let row = first + i * w;
            for (j, &v) in plane[row..row + self.k].iter().enumerate() {
                if v > best {
                    (best, at) = (v, row + j);
                }
            }
        }
        at
    }
}

impl CustomOp1 for MaxPoolS2 {
    fn name(&self) -> &'static str {
        "cemiface-max-pool-s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l.shape().dims4()?;
        let x = cpu_f32(s, l, "max pool input")?;
        let (oh, ow) = self.out_hw(h, w);
        let mut y = vec![0f32; b * c * oh * ow];
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each(|(yp, xp)| {
                for oy in 0..oh {
                    for ox in 0..ow {
                        yp[oy * ow + ox] = xp[self.arg_max(xp, w, oy, ox)];
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((b, c, oh, ow))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = x.dims4()?;
        let device = x.device().clone();
        let (oh, ow) = self.out_hw(h, w);
        let mut dx = vec![0f32; b * c * h * w];
        with_cpu_f32("max pool", &[(x, "input"), (dy, "output gradient")], |v| {
            dx.par_chunks_mut(h * w)
                .zip(v[0].par_chunks(h * w).zip(v[1].par_chunks(oh * ow)))
                .for_each(|(dxp, (xp, dyp))| {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            dxp[self.arg_max(xp, w, oy, ox)] += dyp[oy * ow + ox];
                        }
                    }
                });
            Ok(())
        })?;
        Ok(Some(Tensor::from_vec(dx, (b, c, h, w), &device)?))
    }
}
