//! In-place optimiser arithmetic for the CPU (Candle in-place custom ops; composed ops on other devices): AdamW's moment and
//! parameter updates and the EMA, one pass each over the data without temporaries, with the same
//! f32 operations in the same order as the composed tensor expressions they replace (tested equal).

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};

use crate::nn::ops::{cpu_f32, cpu_f32_mut};

/// m ← m·β + (g·s)·(1 − β), or with `square` v ← v·β + (g·s)²·(1 − β).
struct Moment {
    beta: f32,
    scale: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "cemiface-adamw-moment"
    }
    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (m, g) = (
            cpu_f32_mut(s1, l1, "fused update")?,
            cpu_f32(s2, l2, "fused update")?,
        );
        let one_minus = 1.0 - self.beta;
        for (m, &g) in m.iter_mut().zip(g) {
            let g = g * self.scale;
            let g = if self.square { g * g } else { g };
            *m = *m * self.beta + g * one_minus;
        }
        Ok(())
    }
}

/// p ← p·(1 − lr·wd) − ((m/bc1) / (√(v/bc2) + ε))·lr (as reciprocal multiplications, like Candle's
/// tensor-by-scalar division).
struct Param {
    inv_bc1: f32,
    inv_bc2: f32,
    eps: f32,
    decay: f32,
    lr: f32,
}

impl InplaceOp3 for Param {
    fn name(&self) -> &'static str {
        "cemiface-adamw-param"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (p, m, v) = (
            cpu_f32_mut(s1, l1, "fused update")?,
            cpu_f32(s2, l2, "fused update")?,
            cpu_f32(s3, l3, "fused update")?,
        );
        for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
            let update = (m * self.inv_bc1) / ((v * self.inv_bc2).sqrt() + self.eps);
            *p = *p * self.decay - update * self.lr;
        }
        Ok(())
    }
}

/// shadow ← shadow·d + p·(1 − d).
struct EmaStep {
    d: f32,
}

impl InplaceOp2 for EmaStep {
    fn name(&self) -> &'static str {
        "cemiface-ema"
    }
    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (s, p) = (
            cpu_f32_mut(s1, l1, "fused update")?,
            cpu_f32(s2, l2, "fused update")?,
        );
        let one_minus = 1.0 - self.d;
        for (s, &p) in s.iter_mut().zip(p) {
            *s = *s * self.d + p * one_minus;
        }
        Ok(())
    }
}

/// Whether the in-place path applies: the fast CPU path of [`crate::nn::kernels`] (f32 on the CPU,
/// not forced generic), contiguous, same shapes. Otherwise the optimisers use composed tensor ops.
pub fn applies(tensors: &[&Tensor]) -> bool {
    let first = tensors[0];
    crate::nn::kernels::fast_cpu(tensors)
        && tensors
            .iter()
            .all(|t| t.is_contiguous() && t.shape() == first.shape())
}

/// Stores `new` as optimiser state `slot`, on the generic path: copied into `slot`'s own storage
/// where it can be (same shape, contiguous, not a scalar), so state that lives for the whole run
/// keeps one allocation — as on the fast path — instead of a new one per step scattered among the
/// step's temporaries (which fragments a GPU's memory pool). `slot` must not share storage with a
/// tensor that should keep the old values.
pub fn assign(slot: &mut Tensor, new: Tensor) -> Result<()> {
    if slot.rank() > 0 && slot.is_contiguous() && slot.shape() == new.shape() && slot.dtype() == new.dtype() {
        slot.slice_set(&new.contiguous()?, 0, 0)
    } else {
        *slot = new;
        Ok(())
    }
}

/// One AdamW step for one parameter, in place (`m`, `v` and `p` must not share storage with
/// anything that should keep its old values).
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    (beta1, beta2, eps): (f64, f64, f64),
    (bc1, bc2): (f64, f64),
    (lr, weight_decay, grad_scale): (f64, f64, f64),
) -> Result<()> {
    let scale = grad_scale as f32;
    m.inplace_op2(
        g,
        &Moment {
            beta: beta1 as f32,
            scale,
            square: false,
        },
    )?;
    v.inplace_op2(
        g,
        &Moment {
            beta: beta2 as f32,
            scale,
            square: true,
        },
    )?;
    p.inplace_op3(
        m,
        v,
        &Param {
            inv_bc1: (1.0 / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps: eps as f32,
            decay: (1.0 - lr * weight_decay) as f32,
            lr: lr as f32,
        },
    )
}

/// One EMA step for one parameter, in place.
pub fn ema(shadow: &Tensor, p: &Tensor, decay: f64) -> Result<()> {
    shadow.inplace_op2(p, &EmaStep { d: decay as f32 })
}
