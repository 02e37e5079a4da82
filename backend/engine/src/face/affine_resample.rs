//! A fixed affine resample of image tensors, differentiable with respect to the input: the
//! ArcFace-frame faces every generator produces go through it into dlib's 150×150 chip (and to
//! 112×112 for the IResNets) on every descriptor, SimMat sample and inversion step. On the CPU it is
//! one gather (forward) and one scatter (backward) over the four bilinear taps of each output pixel;
//! the generic path is four index-selects whose backward is Candle's index-add.
//!
//! # Shapes
//! (B, C, H, W) → (B, C, out_h, out_w).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::warp::Similarity;
use crate::nn::kernels::fast_cpu;
use crate::nn::ops::{cpu_f32, with_cpu_f32};
use crate::Result;

/// A fixed affine resample of (B, C, H, W) tensors to (B, C, out, out), differentiable with respect to
/// the input: each output pixel is a bilinear blend of four input pixels (zero outside).
#[derive(Debug, Clone)]
pub struct AffineResample {
    in_hw: (usize, usize),
    out_hw: (usize, usize),
    /// The four corners' input indices and weights, per output pixel (host copy: the CPU op).
    taps: Arc<Vec<[(u32, f32); 4]>>,
    index: [Tensor; 4],
    weight: [Tensor; 4],
}

impl AffineResample {
    /// `out_to_src` maps output pixel coordinates to input pixel coordinates.
    pub fn new(
        in_hw: (usize, usize),
        out_hw: (usize, usize),
        out_to_src: &Similarity,
        device: &Device,
    ) -> Result<Self> {
        let (h, w) = in_hw;
        let n = out_hw.0 * out_hw.1;
        let mut idx = [vec![0u32; n], vec![0u32; n], vec![0u32; n], vec![0u32; n]];
        let mut wt = [vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]];
        for v in 0..out_hw.0 {
            for u in 0..out_hw.1 {
                let o = v * out_hw.1 + u;
                let [x, y] = out_to_src.apply([u as f64, v as f64]);
                let (x0, y0) = (x.floor(), y.floor());
                let (fx, fy) = (x - x0, y - y0);
                let corners = [
                    (0, 0, (1.0 - fx) * (1.0 - fy)),
                    (1, 0, fx * (1.0 - fy)),
                    (0, 1, (1.0 - fx) * fy),
                    (1, 1, fx * fy),
                ];
                for (k, (dx, dy, wk)) in corners.into_iter().enumerate() {
                    let (xi, yi) = (x0 as i64 + dx, y0 as i64 + dy);
                    if xi >= 0 && yi >= 0 && (xi as usize) < w && (yi as usize) < h {
                        idx[k][o] = (yi as usize * w + xi as usize) as u32;
                        wt[k][o] = wk as f32;
                    }
                }
            }
        }
        let taps = Arc::new(
            (0..n)
                .map(|o| std::array::from_fn(|k| (idx[k][o], wt[k][o])))
                .collect::<Vec<_>>(),
        );
        let t = |v: Vec<u32>| Tensor::from_vec(v, n, device);
        let f = |v: Vec<f32>| Tensor::from_vec(v, (1, n), device);
        let [i0, i1, i2, i3] = idx;
        let [w0, w1, w2, w3] = wt;
        Ok(Self {
            in_hw,
            out_hw,
            taps,
            index: [t(i0)?, t(i1)?, t(i2)?, t(i3)?],
            weight: [f(w0)?, f(w1)?, f(w2)?, f(w3)?],
        })
    }

    /// # Shapes
    /// `x`: (B, C, H, W) → (B, C, out_h, out_w).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if (h, w) != self.in_hw {
            return Err(crate::Error::Config(format!(
                "resample built for {:?} input, got {h}×{w}",
                self.in_hw
            )));
        }
        if fast_cpu(&[x]) {
            return Ok(x.contiguous()?.apply_op1(Gather {
                taps: self.taps.clone(),
                in_len: h * w,
                out_hw: self.out_hw,
            })?);
        }
        // The generic path: four index-selects, so the backward pass is a scatter-add.
        let flat = x.reshape((b * c, h * w))?;
        let mut out: Option<Tensor> = None;
        for (i, wk) in self.index.iter().zip(&self.weight) {
            let term = flat.index_select(i, 1)?.broadcast_mul(&wk.to_dtype(x.dtype())?)?;
            out = Some(match out {
                None => term,
                Some(o) => (o + term)?,
            });
        }
        let out = out.expect("four corners");
        Ok(out.reshape((b, c, self.out_hw.0, self.out_hw.1))?)
    }
}

/// The CPU op: y[o] = Σ_k w_k·x[i_k] per output pixel o; dx[i_k] += w_k·dy[o].
#[derive(Debug, Clone)]
struct Gather {
    taps: Arc<Vec<[(u32, f32); 4]>>,
    in_len: usize,
    out_hw: (usize, usize),
}

impl CustomOp1 for Gather {
    fn name(&self) -> &'static str {
        "cemiface-affine-resample"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, _, _) = l.shape().dims4()?;
        let x = cpu_f32(s, l, "resample input")?;
        let n = self.taps.len();
        let mut y = vec![0f32; b * c * n];
        y.par_chunks_mut(n)
            .zip(x.par_chunks(self.in_len))
            .for_each(|(yp, xp)| {
                for (out, taps) in yp.iter_mut().zip(self.taps.iter()) {
                    *out = taps.iter().map(|&(i, w)| w * xp[i as usize]).sum();
                }
            });
        Ok((
            CpuStorage::F32(y),
            Shape::from((b, c, self.out_hw.0, self.out_hw.1)),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let n = self.taps.len();
        let mut dx = vec![0f32; x.elem_count()];
        with_cpu_f32("resample", &[(dy, "output gradient")], |v| {
            dx.par_chunks_mut(self.in_len)
                .zip(v[0].par_chunks(n))
                .for_each(|(dxp, dyp)| {
                    for (&g, taps) in dyp.iter().zip(self.taps.iter()) {
                        for &(i, w) in taps {
                            dxp[i as usize] += w * g;
                        }
                    }
                });
            Ok(())
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::warp::warp_bilinear;
    use image::RgbImage;

    #[test]
    fn tensor_resample_equals_the_photo_warp_and_has_a_gradient() {
        let img = RgbImage::from_fn(9, 7, |x, y| {
            image::Rgb([(x * 20) as u8, (y * 30) as u8, ((x + y) * 9) as u8])
        });
        let map = Similarity {
            a: 0.8,
            b: 0.2,
            tx: 1.5,
            ty: -0.5,
        };
        let want = warp_bilinear(&img, &map, 6, 5);
        let chw: Vec<f32> = (0..3)
            .flat_map(|c| img.pixels().map(move |p| p[c] as f32).collect::<Vec<_>>())
            .collect();
        let x = candle_core::Var::from_vec(chw, (1, 3, 7, 9), &Device::Cpu).unwrap();
        let r = AffineResample::new((7, 9), (5, 6), &map, &Device::Cpu).unwrap();
        let got = r
            .forward(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-3, "{g} vs {w}");
        }
        let grads = r
            .forward(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(g > 0.0);
    }

    /// The CPU op against the generic index-select path: values and gradients.
    #[test]
    fn the_cpu_op_equals_the_generic_path_values_and_gradients() {
        let map = Similarity {
            a: 1.4,
            b: -0.03,
            tx: -6.0,
            ty: -20.0,
        };
        let dev = Device::Cpu;
        let x = candle_core::Var::randn(0f32, 1.0, (2, 3, 64, 64), &dev).unwrap();
        let r = AffineResample::new((64, 64), (150, 150), &map, &dev).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 150, 150), &dev).unwrap();
        let run = || {
            let y = r.forward(x.as_tensor()).unwrap();
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(x.as_tensor()).unwrap().clone())
        };
        let (y, dx) = run();
        let (y_ref, dx_ref) = crate::nn::kernels::with_generic(run);
        let max = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert!(max(&y, &y_ref) < 1e-5 && max(&dx, &dx_ref) < 1e-5);
    }
}
