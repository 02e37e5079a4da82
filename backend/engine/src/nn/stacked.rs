//! Convolutions of small images with the whole batch in one GEMM: the batch's column matrices
//! side by side (K × B·HoWo) instead of one GEMM per image.
//!
//! Per image, a layer with few output positions is a GEMM with a thin right operand (N = HoWo: 1
//! for the DCGAN's first layer seen from its backward pass, 16–256 for its next three, 25–81 for
//! dlib's last stages, 64 for the UNet's 8×8 levels) and a large left one, the weight
//! (Cout × Cin·kh·kw: up to 512 × 8,192 floats), which the `gemm` crate packs again for every image;
//! and a weight gradient that reads and writes the whole dW for a reduction of only HoWo.
//! Stacked, the product has N = B·HoWo columns (or a reduction of B·HoWo):
//! - forward: Y' (Cout × B·HoWo) = W · col, then Y' is unstacked to (B, Cout, HoWo);
//! - weight:  dW = dY' · colᵀ, one GEMM with the batch in its reduction;
//! - input:   dcol = Wᵀ · dY', then col2im image by image out of its column block.
//!
//! The stack and unstack copies move Cout·B·HoWo floats, against 2·K of them in GEMM work per
//! output. The weight gradient gains at every size up to 16×16 (2–3× on single layers at batch 8);
//! the forward pass and the input gradient only at 4×4 and below (see the constants).
//! `CEMIFACE_STACKED=0` turns the path off (every layer per image, as before).

use gemm::Parallelism;

use crate::nn::conv::{add_transposed, grow, matmul, matmul_to, threads, with_scratch};
use crate::nn::im2col::{col2im_stacked, im2col_stacked, Geo};

/// Output positions per image up to which the weight gradient is one stacked GEMM (16×16).
const MAX_OHW: usize = 256;
/// Output positions per image up to which the forward pass and the input gradient are stacked
/// too (4×4: the DCGAN's first two layers). Above it they measured no faster stacked (dlib's
/// 9×9 and 5×5 stages 5–12 % slower at batch 8), while the weight gradient gains at every size
/// up to [`MAX_OHW`].
const MAX_OHW_FORWARD: usize = 16;
/// The largest stacked column matrix, in floats (64 MB).
const MAX_COL: usize = 1 << 24;

/// `CEMIFACE_STACKED=0` turns the stacked path off: for A/B timing. Read once.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("CEMIFACE_STACKED").map_or(true, |v| v != "0"))
}

/// Whether the layer's weight gradient runs stacked: more than one image, few output positions
/// per image, and a column matrix of bounded size.
pub(super) fn applies(g: &Geo) -> bool {
    enabled() && g.b > 1 && g.ohw() <= MAX_OHW && g.k() * g.b * g.ohw() <= MAX_COL
}

/// Whether its forward pass and input gradient run stacked as well: tiny outputs, and not a 1×1
/// layer (whose column matrix is the image itself per image; stacked, it would be one more copy).
pub(super) fn applies_forward(g: &Geo) -> bool {
    applies(g) && g.ohw() <= MAX_OHW_FORWARD && !g.pointwise()
}

/// (B, C, P) → (C, B·P).
fn stack(src: &[f32], (b, c, p): (usize, usize, usize)) -> Vec<f32> {
    let mut dst = vec![0f32; b * c * p];
    for (bi, img) in src.chunks(c * p).enumerate() {
        for (ci, plane) in img.chunks(p).enumerate() {
            dst[ci * b * p + bi * p..][..p].copy_from_slice(plane);
        }
    }
    dst
}

/// (C, B·P) → (B, C, P).
fn unstack(src: &[f32], (b, c, p): (usize, usize, usize)) -> Vec<f32> {
    let mut dst = vec![0f32; b * c * p];
    for (bi, img) in dst.chunks_mut(c * p).enumerate() {
        for (ci, plane) in img.chunks_mut(p).enumerate() {
            plane.copy_from_slice(&src[ci * b * p + bi * p..][..p]);
        }
    }
    dst
}

/// Y = W · im2col(X) [+ bias] for the whole batch in one GEMM.
pub(super) fn forward(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &Geo) -> Vec<f32> {
    let (k, n) = (g.k(), g.b * g.ohw());
    let mut yt = vec![0f32; g.cout * n];
    if let Some(bias) = bias {
        // The GEMM accumulates onto the bias.
        for (row, &bv) in yt.chunks_mut(n).zip(bias) {
            row.fill(bv);
        }
    }
    with_scratch(|(col, _)| {
        grow(col, k * n);
        im2col_stacked(x, g, col);
        let par = Parallelism::Rayon(threads());
        matmul(
            &mut yt,
            (g.cout, n, k),
            wt,
            (k, 1),
            col,
            (n, 1),
            bias.is_some(),
            par,
        );
    });
    unstack(&yt, (g.b, g.cout, g.ohw()))
}

/// dX = col2im(Wᵀ · dY') for the whole batch in one GEMM.
pub(super) fn input_grad(wt: &[f32], dy: &[f32], g: &Geo) -> Vec<f32> {
    let (k, n) = (g.k(), g.b * g.ohw());
    let dyt = stack(dy, (g.b, g.cout, g.ohw()));
    let mut dx = vec![0f32; g.b * g.cin * g.h * g.w];
    with_scratch(|(_, dcol)| {
        grow(dcol, k * n);
        let par = Parallelism::Rayon(threads());
        matmul(dcol, (k, n, g.cout), wt, (1, k), &dyt, (n, 1), false, par);
        col2im_stacked(dcol, g, &mut dx);
    });
    dx
}

/// dW = dY' · colᵀ (Cout × K) for the whole batch in one GEMM, its reduction over every image's
/// output positions.
pub(super) fn weight_grad(x: &[f32], dy: &[f32], g: &Geo) -> Vec<f32> {
    let (k, n) = (g.k(), g.b * g.ohw());
    let dyt = stack(dy, (g.b, g.cout, g.ohw()));
    let mut dw_t = vec![0f32; g.cout * k];
    with_scratch(|(col, _)| {
        grow(col, k * n);
        im2col_stacked(x, g, col);
        // dWᵀ (K × Cout), as the per-image path computes it (see `conv::matmul_to`).
        let par = Parallelism::Rayon(threads());
        matmul_to(
            &mut dw_t,
            (g.cout, k, n),
            (1, g.cout),
            &dyt,
            (n, 1),
            col,
            (1, n),
            false,
            par,
        );
    });
    let mut dw = vec![0f32; g.cout * k];
    add_transposed(&mut dw, &dw_t, k, g.cout);
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstack_inverts_stack() {
        let shape = (3, 4, 5);
        let src: Vec<f32> = (0..60).map(|i| i as f32).collect();
        let s = stack(&src, shape);
        // Channel 1 of image 2 sits in row 1, column block 2.
        assert_eq!(&s[(3 * 5) + 2 * 5..][..5], &src[(2 * 4 + 1) * 5..][..5]);
        assert_eq!(unstack(&s, shape), src);
    }

    #[test]
    fn applies_to_small_images_of_a_batch_only() {
        let g = |b, h| Geo {
            b,
            cin: 64,
            h,
            w: h,
            cout: 64,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            oh: h,
            ow: h,
        };
        assert!(applies(&g(8, 8)) && applies(&g(2, 16)));
        assert!(!applies(&g(1, 8)) && !applies(&g(8, 32)));
        assert!(applies_forward(&g(8, 4)) && !applies_forward(&g(8, 8)));
        let pointwise = Geo {
            kh: 1,
            kw: 1,
            pad: 0,
            ..g(8, 4)
        };
        assert!(applies(&pointwise) && !applies_forward(&pointwise));
    }
}
