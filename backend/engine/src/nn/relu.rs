//! ReLU and the residual `relu(a + b)` as single-pass CPU ops (dlib's ResNet, the landmark net).
//!
//! Candle's `relu` back-propagates as five passes over the activation (zeros, `ge`, a cast, a
//! product, the accumulation), and `(a + b).relu()` adds the sum's own tensor and backward: in
//! dlib's forward + backward at batch 8 that was a fifth of the time. Here the forward is one pass
//! and the backward is one masked copy of the output gradient, `dy · [pre-activation ≥ 0]` (Candle's
//! subgradient at 0, so every device gives the same gradient), shared by both inputs of the sum.
//!
//! # Shapes
//! Any shape; `a` and `b` of the same shape.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::nn::kernels::fast_cpu;
use crate::nn::ops::{cpu_f32, with_cpu_f32};

/// Elements per parallel chunk: small tensors stay on one thread.
const CHUNK: usize = 1 << 14;

/// `max(x, 0)`: the fast CPU op for f32 CPU tensors, Candle's `relu` elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if fast_cpu(&[x]) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

/// `relu(a + b)` (a residual block's output): the fast CPU op for f32 CPU tensors, Candle's ops
/// elsewhere.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        candle_core::bail!("add_relu: shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    if fast_cpu(&[a, b]) {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
    } else {
        (a + b)?.relu()
    }
}

/// `dy · [pre ≥ 0]` with `pre` = x, or a + b when `b` is given, in parallel chunks.
fn masked(dy: &[f32], a: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let mut g = vec![0f32; dy.len()];
    g.par_chunks_mut(CHUNK)
        .zip(dy.par_chunks(CHUNK).zip(a.par_chunks(CHUNK)))
        .enumerate()
        .for_each(|(i, (g, (dy, a)))| match b {
            None => {
                for ((g, &d), &a) in g.iter_mut().zip(dy).zip(a) {
                    *g = if a >= 0.0 { d } else { 0.0 };
                }
            }
            Some(b) => {
                let b = &b[i * CHUNK..][..a.len()];
                for (((g, &d), &a), &b) in g.iter_mut().zip(dy).zip(a).zip(b) {
                    *g = if a + b >= 0.0 { d } else { 0.0 };
                }
            }
        });
    g
}

/// The gradient reaching the pre-activation `a` (+ `b`) from `dy`.
fn relu_grad(dy: &Tensor, a: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let mut args = vec![(dy, "output gradient"), (a, "input")];
    args.extend(b.map(|b| (b, "second input")));
    let g = with_cpu_f32("relu", &args, |v| Ok(masked(v[0], v[1], v.get(2).copied())))?;
    Tensor::from_vec(g, a.shape(), a.device())
}

#[derive(Debug, Clone, Copy)]
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "cemiface-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = cpu_f32(s, l, "relu input")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x.max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(relu_grad(dy, x, None)?))
    }
}

#[derive(Debug, Clone, Copy)]
struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "cemiface-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (cpu_f32(s1, l1, "add_relu a")?, cpu_f32(s2, l2, "add_relu b")?);
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(y, (a, b))| {
                for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
                    *y = (a + b).max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = relu_grad(dy, a, Some(b))?;
        Ok((Some(g.clone()), Some(g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    /// Values and gradients equal Candle's composed ops exactly (same f32 operations), also at
    /// exact zeros (Candle passes the gradient there), on a tensor of several parallel chunks.
    #[test]
    fn relu_and_add_relu_match_candles_ops_and_gradients() {
        let dev = Device::Cpu;
        let shape = (3, 5, 41, 67); // 41,205 elements: three chunks
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap();
        // A few exact zeros of `a` (and of a + b where b is 0 too).
        let index = Tensor::arange(0u32, 41_205, &dev)
            .unwrap()
            .reshape(shape)
            .unwrap();
        let zero_below = |t: &Tensor, n: u32| {
            let mask = index.broadcast_lt(&Tensor::new(n, &dev).unwrap()).unwrap();
            mask.where_cond(&t.zeros_like().unwrap(), t).unwrap()
        };
        let (a_t, b_t) = (zero_below(a.as_tensor(), 7), zero_below(b.as_tensor(), 3));
        let probe = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let run = |f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
            let y = f(&a_t, &b_t);
            let g = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, g.get(&a).unwrap().clone(), g.get(&b).unwrap().clone())
        };
        let ours = run(&|a, b| (relu(a).unwrap() + add_relu(a, b).unwrap()).unwrap());
        let reference = crate::nn::kernels::with_generic(|| {
            run(&|a, b| (relu(a).unwrap() + add_relu(a, b).unwrap()).unwrap())
        });
        assert_eq!(max_diff(&ours.0, &reference.0), 0.0, "values");
        assert_eq!(max_diff(&ours.1, &reference.1), 0.0, "gradient of a");
        assert_eq!(max_diff(&ours.2, &reference.2), 0.0, "gradient of b");
        assert!(add_relu(&a_t, &probe.narrow(0, 0, 1).unwrap()).is_err());
    }
}
