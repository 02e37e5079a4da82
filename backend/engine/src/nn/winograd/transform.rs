//! The arithmetic of F(4×4, 3×3) (Lavin & Gray 2016, the matrices G, Bᵀ, Aᵀ): the kernel, input
//! and output transforms on lanes of 8 channels, and U for a whole layer.

// Lane loops index several arrays by the lane.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::{padded, Lane, A, LANES, M, P};

/// G g along one axis, for a lane of kernels: 3 taps to 6 values.
#[inline(always)]
fn kernel_1d(g: &[Lane; 3]) -> [Lane; A] {
    const SIXTH: f32 = 1.0 / 6.0;
    const TWELFTH: f32 = 1.0 / 12.0;
    const TWENTYFOURTH: f32 = 1.0 / 24.0;
    let mut k = [[0f32; LANES]; A];
    for l in 0..LANES {
        let [g0, g1, g2] = [g[0][l], g[1][l], g[2][l]];
        k[0][l] = 0.25 * g0;
        k[1][l] = -SIXTH * (g0 + g1 + g2);
        k[2][l] = -SIXTH * (g0 - g1 + g2);
        k[3][l] = TWENTYFOURTH * g0 + TWELFTH * g1 + SIXTH * g2;
        k[4][l] = TWENTYFOURTH * g0 - TWELFTH * g1 + SIXTH * g2;
        k[5][l] = g2;
    }
    k
}

/// A 6×6 tile of lanes, [row][column][lane].
pub(super) type Tile6 = [[Lane; A]; A];

/// Bᵀ applied to the six values `d(0..6)` of one lane.
#[inline(always)]
fn bt(d: [f32; A]) -> [f32; A] {
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        4.0 * d0 - 5.0 * d2 + d4,
        -4.0 * (d1 + d2) + d3 + d4,
        4.0 * (d1 - d2) - d3 + d4,
        2.0 * (d3 - d1) - d2 + d4,
        2.0 * (d1 - d3) - d2 + d4,
        4.0 * d1 - 5.0 * d3 + d5,
    ]
}

/// Aᵀ applied to the six values `m(0..6)` of one lane.
#[inline(always)]
fn at(m: [f32; A]) -> [f32; M] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [
        m0 + s12 + s34,
        d12 + 2.0 * d34,
        s12 + 4.0 * s34,
        d12 + 8.0 * d34 + m5,
    ]
}

/// v = Bᵀ d B, lane by lane (in place through `t`; the arrays are never moved, which would copy
/// them through memcpy).
#[inline(always)]
pub(super) fn input_2d(d: &Tile6, t: &mut Tile6, v: &mut Tile6) {
    for j in 0..A {
        for l in 0..LANES {
            let c = bt(std::array::from_fn(|i| d[i][j][l]));
            for (i, x) in c.into_iter().enumerate() {
                t[i][j][l] = x;
            }
        }
    }
    for i in 0..A {
        for l in 0..LANES {
            let r = bt(std::array::from_fn(|j| t[i][j][l]));
            for (j, x) in r.into_iter().enumerate() {
                v[i][j][l] = x;
            }
        }
    }
}

/// y = Aᵀ m A, lane by lane (through `t`).
#[inline(always)]
pub(super) fn output_2d(m: &Tile6, t: &mut [[Lane; A]; M], y: &mut [[Lane; M]; M]) {
    for j in 0..A {
        for l in 0..LANES {
            let c = at(std::array::from_fn(|i| m[i][j][l]));
            for (i, x) in c.into_iter().enumerate() {
                t[i][j][l] = x;
            }
        }
    }
    for i in 0..M {
        for l in 0..LANES {
            let r = at(std::array::from_fn(|j| t[i][j][l]));
            for (j, x) in r.into_iter().enumerate() {
                y[i][j][l] = x;
            }
        }
    }
}

/// U = G g Gᵀ of every kernel of the convolution y = conv(x, w'), laid out [c][position][r] for
/// its output channels r and input channels c (r padded to whole lanes): position p's GEMM operand
/// (R × C, column-major) starts at `p * R'` with column stride `P * R'`, which `gemm` reads
/// without packing it. Without
/// `flip`, w' = w (R = Cout, C = Cin); with `flip`, w' is the kernel of the input gradient,
/// w'[ci][co] = w[co][ci] rotated by 180° (R = Cin, C = Cout).
pub(super) fn transform_weights(w: &[f32], cout: usize, cin: usize, flip: bool) -> Vec<f32> {
    let (rs, cs) = if flip { (cin, cout) } else { (cout, cin) };
    let rp = padded(rs);
    let mut u = vec![0f32; cs * P * rp];
    u.par_chunks_mut(P * rp).enumerate().for_each(|(c, uc)| {
        for r0 in (0..rs).step_by(LANES) {
            let n = LANES.min(rs - r0);
            // taps[ky][kx][lane] of kernels (r0 + lane, c).
            let mut taps = [[[0f32; LANES]; 3]; 3];
            for l in 0..n {
                let (co, ci) = if flip { (c, r0 + l) } else { (r0 + l, c) };
                let k: &[f32; 9] = w[(co * cin + ci) * 9..][..9].try_into().expect("a 3×3 kernel");
                for (t, &v) in k.iter().enumerate() {
                    let t = if flip { 8 - t } else { t };
                    taps[t / 3][t % 3][l] = v;
                }
            }
            let mut gg = [[[0f32; LANES]; 3]; A]; // G g: 6 × 3
            for x in 0..3 {
                for (i, v) in kernel_1d(&std::array::from_fn(|y| taps[y][x]))
                    .into_iter()
                    .enumerate()
                {
                    gg[i][x] = v;
                }
            }
            for (i, row) in gg.iter().enumerate() {
                for (j, v) in kernel_1d(row).iter().enumerate() {
                    let dst: &mut Lane = (&mut uc[(i * A + j) * rp + r0..][..LANES])
                        .try_into()
                        .expect("a lane");
                    *dst = *v;
                }
            }
        }
    });
    u
}
