//! 2-D convolution for the CPU as im2col + GEMM, forward and backward (a Candle custom op).
//!
//! Candle 0.11's CPU backward pass runs the input gradient through a direct `conv_transpose2d`
//! and the weight gradient through a convolution whose "kernel" is the whole output gradient;
//! both are far from GEMM speed. Here every direction is one GEMM per image over the same im2col
//! matrix (K = Cin·kh·kw rows, Ho·Wo columns):
//! - forward: Y_b (Cout × HoWo) = W (Cout × K) · col_b
//! - weight:  dW (Cout × K) = Σ_b dY_b · col_bᵀ
//! - input:   dX_b = col2im(Wᵀ · dY_b)
//!
//! Images run in parallel (one GEMM each) when the batch can keep every thread busy, otherwise the
//! GEMM itself is parallel; for a batch of small outputs (≤ 16×16) the weight gradient, and at 4×4
//! and below every direction, is one GEMM over the batch's stacked column matrices
//! ([`crate::nn::stacked`]). Large enough 3×3 layers with stride 1 and padding 1 run the forward
//! pass and dX as Winograd F(4×4, 3×3) instead ([`crate::nn::winograd`]). Other devices use
//! Candle's own kernels.

use candle_core::{CpuStorage, CustomOp2, Layout, Module, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

use crate::nn::im2col::{col2im, im2col, Geo};
use crate::nn::ops::{cpu_f32, with_cpu_f32};
use crate::nn::{stacked, winograd};

/// dst (m × n, row-major) = [dst +] lhs · rhs, with explicit (row, column) strides of lhs and rhs.
#[allow(clippy::too_many_arguments, unsafe_code)]
pub(super) fn matmul(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    accumulate: bool,
    par: Parallelism,
) {
    matmul_to(
        dst,
        (m, n, k),
        (n, 1),
        lhs,
        (lhs_rs, lhs_cs),
        rhs,
        (rhs_rs, rhs_cs),
        accumulate,
        par,
    );
}

/// [`matmul`] into a dst (m × n) with explicit (row, column) strides: (1, m) stores the transpose,
/// dst (n × m, row-major) = [dst +] (lhs · rhs)ᵀ. The `gemm` crate packs its left operand in column
/// panels; for the weight gradient, whose two operands both run along the reduction, asking for the
/// transposed product makes that operand the small output gradient rather than the column matrix
/// (9·Cin/Cout times larger).
#[allow(clippy::too_many_arguments, unsafe_code)]
pub(super) fn matmul_to(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    (dst_rs, dst_cs): (usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    accumulate: bool,
    par: Parallelism,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        (m - 1) * dst_rs + (n - 1) * dst_cs < dst.len(),
        "gemm: dst too short"
    );
    assert!(
        (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(),
        "gemm: lhs too short"
    );
    assert!(
        (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(),
        "gemm: rhs too short"
    );
    // SAFETY: the asserts above prove that every element the strides address lies inside the
    // slices; dst is exclusively borrowed and does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Whether a GEMM runs on several threads: the im2col copies around it are then spread too.
fn spreads(par: Parallelism) -> bool {
    matches!(par, Parallelism::Rayon(n) if n > 1)
}

/// dst (cols × rows) += srcᵀ for src (rows × cols), both row-major, in cache-sized tiles.
pub(super) fn add_transposed(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                let s = &src[r * cols..][c0..(c0 + T).min(cols)];
                for (j, &v) in s.iter().enumerate() {
                    dst[(c0 + j) * rows + r] += v;
                }
            }
        }
    }
}

/// Candle's thread count, read once (Candle re-reads the environment and the CPU topology files at
/// every call, which shows up in profiles).
pub fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

thread_local! {
    /// Per-thread im2col buffers, kept between calls: allocating (and zero-filling) megabytes per
    /// convolution showed up as 8 % of a training step.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Makes `buf` at least `n` long. Never shrinks it: `Vec::resize` back up would zero-fill the
/// regrown part again at every call after a smaller convolution.
pub(super) fn grow(buf: &mut Vec<f32>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are in use further up the stack).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut (Vec<f32>, Vec<f32>)) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut bufs) => f(&mut bufs),
        Err(_) => f(&mut (Vec::new(), Vec::new())),
    })
}

/// The custom op: arguments (input (B, Cin, H, W), weight (Cout, Cin, kh, kw)), both contiguous.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dOp {
    pub stride: usize,
    pub padding: usize,
}

impl Conv2dOp {
    fn geo(&self, x: &[usize], w: &[usize]) -> Result<Geo> {
        let ([b, cin, h, wd], [cout, cin2, kh, kw]) = (
            <[usize; 4]>::try_from(x)
                .map_err(|_| candle_core::Error::Msg("conv2d: input is not 4-D".into()))?,
            <[usize; 4]>::try_from(w)
                .map_err(|_| candle_core::Error::Msg("conv2d: weight is not 4-D".into()))?,
        );
        if cin != cin2 || h + 2 * self.padding < kh || wd + 2 * self.padding < kw || self.stride == 0 {
            candle_core::bail!("conv2d: input {x:?} does not fit weight {w:?}");
        }
        let (oh, ow) = (
            (h + 2 * self.padding - kh) / self.stride + 1,
            (wd + 2 * self.padding - kw) / self.stride + 1,
        );
        Ok(Geo {
            b,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            stride: self.stride,
            pad: self.padding,
            oh,
            ow,
        })
    }
}

/// Y = W · im2col(X) [+ bias] for every image.
pub(super) fn forward(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &Geo) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::conv3x3(x, wt, bias, g);
    }
    if stacked::applies_forward(g) {
        return stacked::forward(x, wt, bias, g);
    }
    let (k, ohw, img) = (g.k(), g.ohw(), g.cin * g.h * g.w);
    let mut y = vec![0f32; g.b * g.cout * ohw];
    if let Some(bias) = bias {
        // The GEMM accumulates onto the bias (one pass less than adding it afterwards).
        for yb in y.chunks_mut(g.cout * ohw) {
            for (row, &bv) in yb.chunks_mut(ohw).zip(bias) {
                row.fill(bv);
            }
        }
    }
    let accumulate = bias.is_some();
    let one = |xb: &[f32], yb: &mut [f32], col: &mut Vec<f32>, par| {
        let rhs: &[f32] = if g.pointwise() {
            xb
        } else {
            grow(col, k * ohw);
            im2col(xb, g, col, spreads(par));
            col
        };
        matmul(yb, (g.cout, ohw, k), wt, (k, 1), rhs, (ohw, 1), accumulate, par);
    };
    if g.b >= threads() && threads() > 1 {
        y.par_chunks_mut(g.cout * ohw)
            .zip(x.par_chunks(img))
            .for_each(|(yb, xb)| with_scratch(|bufs| one(xb, yb, &mut bufs.0, Parallelism::None)));
    } else {
        with_scratch(|bufs| {
            for (yb, xb) in y.chunks_mut(g.cout * ohw).zip(x.chunks(img)) {
                one(xb, yb, &mut bufs.0, Parallelism::Rayon(threads()));
            }
        });
    }
    y
}

/// (dX, dW) from the output gradient. Without `need_dw` (a frozen weight: dlib inside SimMat and
/// the inversion) dW is left empty and its im2col and GEMM are skipped: half the backward's work.
pub(super) fn backward(x: &[f32], wt: &[f32], dy: &[f32], g: &Geo, need_dw: bool) -> (Vec<f32>, Vec<f32>) {
    let (k, ohw, img) = (g.k(), g.ohw(), g.cin * g.h * g.w);
    // dX from Winograd's transforms (a large 3×3 same layer) or from one stacked GEMM (a batch of
    // tiny outputs); dW from one stacked GEMM for a batch of small outputs. The rest per image.
    let dx_whole = if winograd::applies(g) {
        Some(winograd::input_grad(dy, wt, g))
    } else if stacked::applies_forward(g) {
        Some(stacked::input_grad(wt, dy, g))
    } else {
        None
    };
    let dx_done = dx_whole.is_some();
    let mut dx = dx_whole.unwrap_or_else(|| vec![0f32; g.b * img]);
    let stacked_dw = need_dw && stacked::applies(g);
    let dw = if stacked_dw {
        stacked::weight_grad(x, dy, g)
    } else {
        Vec::new()
    };
    let per_image_dw = need_dw && !stacked_dw;
    if dx_done && !per_image_dw {
        return (dx, dw);
    }
    if !per_image_dw {
        let one = |dyb: &[f32], dxb: &mut [f32], dcol: &mut Vec<f32>, par| {
            if g.pointwise() {
                matmul(dxb, (k, ohw, g.cout), wt, (1, k), dyb, (ohw, 1), false, par);
            } else {
                grow(dcol, k * ohw);
                matmul(dcol, (k, ohw, g.cout), wt, (1, k), dyb, (ohw, 1), false, par);
                col2im(dcol, g, dxb, spreads(par));
            }
        };
        if g.b >= threads() && threads() > 1 {
            dx.par_chunks_mut(img)
                .zip(dy.par_chunks(g.cout * ohw))
                .for_each(|(dxb, dyb)| with_scratch(|bufs| one(dyb, dxb, &mut bufs.1, Parallelism::None)));
        } else {
            with_scratch(|bufs| {
                for (dxb, dyb) in dx.chunks_mut(img).zip(dy.chunks(g.cout * ohw)) {
                    one(dyb, dxb, &mut bufs.1, Parallelism::Rayon(threads()));
                }
            });
        }
        return (dx, dw);
    }
    // Per image: dWᵀ += (dY_b · col_bᵀ)ᵀ, dcol = Wᵀ · dY_b, dX_b = col2im(dcol).
    let one =
        |xb: &[f32], dyb: &[f32], dxb: &mut [f32], dw_t: &mut [f32], bufs: &mut (Vec<f32>, Vec<f32>), par| {
            let (col, dcol) = bufs;
            let colr: &[f32] = if g.pointwise() {
                xb
            } else {
                grow(col, k * ohw);
                im2col(xb, g, col, spreads(par));
                col
            };
            matmul_to(
                dw_t,
                (g.cout, k, ohw),
                (1, g.cout),
                dyb,
                (ohw, 1),
                colr,
                (1, ohw),
                true,
                par,
            );
            if dx_done {
                // dX came from Winograd or the stacked GEMM above.
            } else if g.pointwise() {
                matmul(dxb, (k, ohw, g.cout), wt, (1, k), dyb, (ohw, 1), false, par);
            } else {
                grow(dcol, k * ohw);
                matmul(dcol, (k, ohw, g.cout), wt, (1, k), dyb, (ohw, 1), false, par);
                col2im(dcol, g, dxb, spreads(par));
            }
        };
    // dWᵀ (K × Cout), accumulated image by image (see `matmul_to`), transposed once at the end.
    let dw_t = if g.b >= threads() && threads() > 1 {
        let dws: Vec<Vec<f32>> = dx
            .par_chunks_mut(img)
            .zip(x.par_chunks(img).zip(dy.par_chunks(g.cout * ohw)))
            .fold(
                || vec![0f32; g.cout * k],
                |mut dw, (dxb, (xb, dyb))| {
                    with_scratch(|bufs| one(xb, dyb, dxb, &mut dw, bufs, Parallelism::None));
                    dw
                },
            )
            .collect();
        let mut total = vec![0f32; g.cout * k];
        for part in dws {
            total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
        }
        total
    } else {
        let mut dw = vec![0f32; g.cout * k];
        with_scratch(|bufs| {
            for (dxb, (xb, dyb)) in dx.chunks_mut(img).zip(x.chunks(img).zip(dy.chunks(g.cout * ohw))) {
                one(xb, dyb, dxb, &mut dw, bufs, Parallelism::Rayon(threads()));
            }
        });
        dw
    };
    let mut dw = vec![0f32; g.cout * k];
    add_transposed(&mut dw, &dw_t, k, g.cout);
    (dx, dw)
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "cemiface-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geo(l1.dims(), l2.dims())?;
        let y = forward(cpu_f32(s1, l1, "input")?, cpu_f32(s2, l2, "weight")?, None, &g);
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geo(x.dims(), w.dims())?;
        // A weight that is neither a variable nor computed from one (loaded, frozen) needs no dW.
        let need_dw = w.track_op();
        let (dx, dw) = with_cpu_f32(
            "conv2d",
            &[(x, "input"), (w, "weight"), (dy, "output gradient")],
            |v| Ok(backward(v[0], v[1], v[2], &g, need_dw)),
        )?;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            need_dw
                .then(|| Tensor::from_vec(dw, w.shape(), w.device()))
                .transpose()?,
        ))
    }
}

/// The same op with a bias (Cout,) as third argument, added inside the GEMM.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dBiasOp(pub Conv2dOp);

impl candle_core::CustomOp3 for Conv2dBiasOp {
    fn name(&self) -> &'static str {
        "cemiface-conv2d-bias"
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
        let g = self.0.geo(l1.dims(), l2.dims())?;
        let bias = cpu_f32(s3, l3, "bias")?;
        if bias.len() != g.cout {
            candle_core::bail!("conv2d: bias of {} for {} output channels", bias.len(), g.cout);
        }
        let y = forward(
            cpu_f32(s1, l1, "input")?,
            cpu_f32(s2, l2, "weight")?,
            Some(bias),
            &g,
        );
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.0.bwd(x, w, res, dy)?;
        let db = dy.sum(3)?.sum(2)?.sum(0)?.reshape(b.shape())?;
        Ok((dx, dw, Some(db)))
    }
}

/// `x` (B, Cin, H, W) convolved with `w` (Cout, Cin, kh, kw): the GEMM op for f32 CPU tensors,
/// Candle's kernel on other devices (see [`crate::nn::kernels`]).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    conv2d_bias(x, w, None, stride, padding)
}

/// [`conv2d`] plus a per-channel bias (Cout,): added inside the GEMM on the fast path, broadcast
/// after Candle's convolution on the generic one.
pub fn conv2d_bias(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let op = Conv2dOp { stride, padding };
    let mut operands = vec![x, w];
    operands.extend(bias);
    if crate::nn::kernels::fast_cpu(&operands) {
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return match bias {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, Conv2dBiasOp(op)),
            None => x.apply_op2(&w, op),
        };
    }
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}

/// A convolution layer with bias, built from (and loading like) `candle_nn::Conv2d`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl From<candle_nn::Conv2d> for Conv2d {
    fn from(c: candle_nn::Conv2d) -> Self {
        let cfg = *c.config();
        assert!(
            cfg.dilation == 1 && cfg.groups == 1,
            "dilated or grouped convolutions are not used here"
        );
        Self {
            weight: c.weight().clone(),
            bias: c.bias().cloned(),
            stride: cfg.stride,
            padding: cfg.padding,
        }
    }
}

impl Conv2d {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d_bias(x, &self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
}
