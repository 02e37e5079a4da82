//! GroupNorm fused with the per-sample affine of AdaGN (guided-diffusion's `use_scale_shift_norm`:
//! norm(x)·(1 + scale) + shift) and SiLU, forward and backward in two passes over the data (a
//! Candle custom op on the CPU; composed Candle ops elsewhere).
//!
//! The op sees x (B, C, …) and per-(sample, channel) coefficients a, b (B, C):
//!   y = act(x̂·a + b),  x̂ = (x − μ_g)/√(σ²_g + ε)   (statistics per sample and group)
//! and the cheap (B, C) algebra that builds a, b from γ, β, scale and shift stays in Candle, so
//! their gradients come from autograd. Backward, with z = x̂·a + b and dz = dy·act′(z):
//!   da = Σ dz·x̂,  db = Σ dz,  dx = rstd·(dx̂ − mean_g(dx̂) − x̂·mean_g(dx̂·x̂)),  dx̂ = dz·a.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::nn::ops::cpu_f32;
use crate::nn::vector_math::{self, sigmoid};

/// The fused op: arguments (x, a, b), all contiguous f32.
#[derive(Debug, Clone, Copy)]
struct GroupNormOp {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// Mean and 1/√(var + ε) of a group (two passes; blocked sums, see [`vector_math::sum`]).
fn stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = (vector_math::sum(x, |v| v) / n) as f32;
    let var = vector_math::sum(x, |v| (v - mean) * (v - mean)) / n;
    (mean, (1.0 / (var + eps).sqrt()) as f32)
}

impl GroupNormOp {
    fn dims(&self, x: &[usize]) -> Result<(usize, usize, usize)> {
        if x.len() < 2 || !x[1].is_multiple_of(self.groups) {
            candle_core::bail!("group_norm: {x:?} does not split into {} groups", self.groups);
        }
        Ok((x[0], x[1], x[2..].iter().product()))
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "cemiface-group-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = self.dims(l1.dims())?;
        let (x, a, b) = (
            cpu_f32(s1, l1, "x")?,
            cpu_f32(s2, l2, "a")?,
            cpu_f32(s3, l3, "b")?,
        );
        let cpg = c / self.groups;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(cpg * hw)
            .zip(x.par_chunks(cpg * hw))
            .enumerate()
            .for_each(|(i, (yg, xg))| {
                let (mean, rstd) = stats(xg, self.eps);
                let first = i * cpg; // index into the (B·C) coefficients
                for (k, (yc, xc)) in yg.chunks_mut(hw).zip(xg.chunks(hw)).enumerate() {
                    let (ak, bk) = (a[first + k] * rstd, b[first + k] - mean * rstd * a[first + k]);
                    if self.silu {
                        yc.iter_mut().zip(xc).for_each(|(o, &v)| {
                            let z = v * ak + bk;
                            *o = z * sigmoid(z);
                        });
                    } else {
                        yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = v * ak + bk);
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, c, hw) = self.dims(x.dims())?;
        let cpg = c / self.groups;
        let dy = dy.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (as_, al) = a.storage_and_layout();
        let (bs, bl) = b.storage_and_layout();
        let (ds, dl) = dy.storage_and_layout();
        use candle_core::Storage::Cpu;
        let (Cpu(xs), Cpu(as_), Cpu(bs), Cpu(ds)) = (&*xs, &*as_, &*bs, &*ds) else {
            candle_core::bail!("group_norm: the custom op runs on the CPU only");
        };
        let (xv, av, bv, dv) = (
            cpu_f32(xs, xl, "x")?,
            cpu_f32(as_, al, "a")?,
            cpu_f32(bs, bl, "b")?,
            cpu_f32(ds, dl, "dy")?,
        );
        let mut dx = vec![0f32; xv.len()];
        let mut da = vec![0f32; av.len()];
        let mut db = vec![0f32; av.len()];
        dx.par_chunks_mut(cpg * hw)
            .zip(da.par_chunks_mut(cpg).zip(db.par_chunks_mut(cpg)))
            .zip(xv.par_chunks(cpg * hw).zip(dv.par_chunks(cpg * hw)))
            .enumerate()
            .for_each(|(i, ((dxg, (dag, dbg)), (xg, dyg)))| {
                let (mean, rstd) = stats(xg, self.eps);
                let first = i * cpg;
                // Pass 1: dz into dxg (as a scratch), da, db and the group sums of dx̂ and dx̂·x̂.
                let (mut s1, mut s2) = (0f64, 0f64);
                for k in 0..cpg {
                    let (ak, bk) = (av[first + k], bv[first + k]);
                    let range = k * hw..(k + 1) * hw;
                    let (o, x, g) = (&mut dxg[range.clone()], &xg[range.clone()], &dyg[range]);
                    // Two closures rather than a branch inside one: each loop vectorises alone.
                    let (sa, sb) = if self.silu {
                        vector_math::map_sum2(o, x, g, |v, g| {
                            let xh = (v - mean) * rstd;
                            let z = xh * ak + bk;
                            let s = sigmoid(z);
                            let dz = g * s * (1.0 + z * (1.0 - s));
                            (dz, dz * xh, dz)
                        })
                    } else {
                        vector_math::map_sum2(o, x, g, |v, g| (g, g * (v - mean) * rstd, g))
                    };
                    dag[k] = sa as f32;
                    dbg[k] = sb as f32;
                    s1 += sb * ak as f64;
                    s2 += sa * ak as f64;
                }
                let n = (cpg * hw) as f64;
                let (m1, m2) = ((s1 / n) as f32, (s2 / n) as f32);
                // Pass 2: dx = rstd·(dz·a − mean(dx̂) − x̂·mean(dx̂·x̂)).
                for k in 0..cpg {
                    let ak = av[first + k];
                    let range = k * hw..(k + 1) * hw;
                    for (o, &v) in dxg[range.clone()].iter_mut().zip(&xg[range]) {
                        let xh = (v - mean) * rstd;
                        *o = rstd * (*o * ak - m1 - xh * m2);
                    }
                }
            });
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(da, a.shape(), dev)?),
            Some(Tensor::from_vec(db, b.shape(), dev)?),
        ))
    }
}

/// GroupNorm with learnable γ (`weight`) and β (`bias`), as `torch.nn.GroupNorm`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.0))?,
            groups,
            eps,
        })
    }

    /// act(norm(x)·γ·(1 + scale) + β·(1 + scale) + shift) with optional (B, C) `scale_shift` and
    /// SiLU; `x` is (B, C, …).
    pub fn forward_fused(
        &self,
        x: &Tensor,
        scale_shift: Option<(&Tensor, &Tensor)>,
        silu: bool,
    ) -> Result<Tensor> {
        let (bsz, c) = (x.dim(0)?, x.dim(1)?);
        let (mut a, mut b) = (
            self.weight.unsqueeze(0)?.broadcast_as((bsz, c))?,
            self.bias.unsqueeze(0)?.broadcast_as((bsz, c))?,
        );
        if let Some((scale, shift)) = scale_shift {
            let s1 = (scale + 1.0)?;
            a = (a * &s1)?;
            b = ((b * &s1)? + shift)?;
        }
        if crate::nn::kernels::fast_cpu(&[x, &a, &b]) {
            let op = GroupNormOp {
                groups: self.groups,
                eps: self.eps,
                silu,
            };
            return x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op);
        }
        // The generic path (every device; see `crate::nn::kernels`).
        let dims = x.dims().to_vec();
        let g = x.reshape((bsz, self.groups, ()))?;
        let mean = g.mean_keepdim(2)?;
        let centred = g.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(2)?;
        let xh = centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .reshape(dims.as_slice())?;
        let mut shape = vec![bsz, c];
        shape.resize(dims.len(), 1);
        let z = xh
            .broadcast_mul(&a.reshape(shape.as_slice())?)?
            .broadcast_add(&b.reshape(shape.as_slice())?)?;
        if silu {
            z.silu()
        } else {
            Ok(z)
        }
    }

    /// Plain GroupNorm.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, None, false)
    }
}
