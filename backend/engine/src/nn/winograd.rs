//! The 3×3 convolution (stride 1, padding 1) as Winograd's minimal filtering F(4×4, 3×3): the
//! forward pass and the input gradient of [`crate::nn::conv`] for every such layer large enough to
//! pay for its transforms (the UNet's and dlib's bodies).
//!
//! Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): each 4×4 output
//! tile is Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A for the 6×6 input patch d around it and the 3×3 kernel g.
//! Summed over input channels, the element-wise product becomes one GEMM per position of the 6×6
//! transformed tile:
//! - weights: U_p (Cout × Cin) = (G g Gᵀ)_p for every (co, ci);
//! - input:   V_p (Cin × T) = (Bᵀ d B)_p for every (ci, tile);
//! - product: M_p (Cout × T) = U_p · V_p, 36 GEMMs of K = Cin;
//! - output:  y tile = Aᵀ M A.
//!
//! That is 36 multiplications per 16 outputs instead of 144 (4× fewer GEMM flops than im2col) for
//! 2.25× the input in transformed tiles instead of 9× in an im2col matrix. The tiles of the whole
//! batch are cut into blocks of 64, one block per task on each thread: input transform, 36 GEMMs
//! and output transform run while the block's V and M are in that core's cache. Channels run in
//! lanes of 8 (fixed-size arrays the compiler vectorises at every SIMD level; channel counts are
//! padded to whole lanes in U, V and M, so every lane moves whole). U is stored column-major and V
//! row by tile, the layouts `gemm` multiplies without packing either. The transposing load of the
//! input patches and store of the output tiles use AVX where the processor has it (tested equal
//! to the portable code).
//!
//! Rounding: the transforms' constants (¼, ⅙, 1/24 …) cost about one decimal digit against a direct
//! convolution (≈ 1e-5 of the output's scale in f32 instead of ≈ 3e-7; the tests below and in
//! `tests/custom_ops.rs`). `CEMIFACE_WINOGRAD=0` turns the path off.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::nn::im2col::Geo;

mod lanes;
mod transform;

use lanes::{gather, gather_edge, scatter_portable};
use transform::{input_2d, output_2d, transform_weights};

/// Output tile side (m), kernel side (r) and transformed tile side α = m + r − 1.
const M: usize = 4;
const A: usize = 6;
/// Positions of a transformed tile.
const P: usize = A * A;
/// Tiles transformed together.
const LANES: usize = 8;

type Lane = [f32; LANES];

/// `CEMIFACE_WINOGRAD=0` turns the Winograd path off (every layer on im2col + GEMM): for A/B timing
/// and for runs that must round exactly like the im2col path. Read once.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("CEMIFACE_WINOGRAD").map_or(true, |v| v != "0"))
}

/// Whether the layer is a 3×3 same convolution with enough pixels per thread for its transforms
/// to pay off. Every block of tiles streams all of U (36·Cin·Cout floats) through its GEMMs, so the
/// layer needs about Cin·Cout/512 tiles of output per thread (measured with `cemiface bench` and
/// single layers: 128 channels at 16×16 and batch 1, 128 at 8×8 and batch 8 (dlib), or 256 at 8×8
/// and batch 8, are faster as im2col + GEMM; 128 at 32×32 and batch 1 and everything larger are
/// faster here).
pub(super) fn applies(g: &Geo) -> bool {
    enabled()
        && g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.pad == 1
        && g.cin >= 8
        && g.cout >= 8
        && g.b * g.ohw() * 32 >= g.cin * g.cout * crate::nn::conv::threads()
}

/// A channel count rounded up to whole lanes: the row length of U, V and M, so that every lane is
/// read and written whole (a partial one made the compiler call memcpy for every lane).
fn padded(c: usize) -> usize {
    c.next_multiple_of(LANES)
}

/// Tiles of one image: (rows, columns) of 4×4 output tiles.
fn tiles(g: &Geo) -> (usize, usize) {
    (g.oh.div_ceil(M), g.ow.div_ceil(M))
}

/// Where one tile lies: the offset of its image in the input (and output) and the top-left corner
/// of its 6×6 input patch (one pixel above and left of the output tile, so possibly −1).
#[derive(Clone, Copy)]
struct TileAt {
    b: usize,
    y0: isize,
    x0: isize,
    /// The patch lies inside the image (no padding to read).
    inside: bool,
}

fn tile_at(g: &Geo, t: usize) -> TileAt {
    let (th, tw) = tiles(g);
    let (b, r) = (t / (th * tw), t % (th * tw));
    let (y0, x0) = ((r / tw * M) as isize - 1, (r % tw * M) as isize - 1);
    let inside = y0 >= 0 && x0 >= 0 && y0 as usize + A <= g.h && x0 as usize + A <= g.w;
    TileAt { b, y0, x0, inside }
}

/// V = Bᵀ d B for a block of tiles, laid out [position][tile][ci] with ci padded to whole lanes
/// (position p's GEMM operand, Cin × tiles column-major, at `p * tb * Cin'`); channels run in lanes.
fn transform_input(x: &[f32], g: &Geo, at: &[TileAt], v: &mut [f32]) {
    let (img, plane, tb, cp) = (g.cin * g.h * g.w, g.h * g.w, at.len(), padded(g.cin));
    let (mut d, mut tmp, mut vt) = (
        [[[0f32; LANES]; A]; A],
        [[[0f32; LANES]; A]; A],
        [[[0f32; LANES]; A]; A],
    );
    for (ti, t) in at.iter().enumerate() {
        for c0 in (0..g.cin).step_by(LANES) {
            let n = LANES.min(g.cin - c0);
            let start = t.b * img + c0 * plane;
            if t.inside && n == LANES {
                let corner = start + t.y0 as usize * g.w + t.x0 as usize;
                gather(x, corner, plane, g.w, &mut d);
            } else {
                gather_edge(x, start, plane, g, t, n, &mut d);
            }
            input_2d(&d, &mut tmp, &mut vt);
            for (p, vals) in vt.iter().flatten().enumerate() {
                let dst: &mut Lane = (&mut v[(p * tb + ti) * cp + c0..][..LANES])
                    .try_into()
                    .expect("a lane");
                *dst = *vals;
            }
        }
    }
}

/// A raw view of the output that the blocks of one call write through, each its own tiles.
#[derive(Clone, Copy)]
struct Out(*mut f32, usize);
// SAFETY: only shared with the blocks of one `run`, which write pairwise disjoint elements.
#[allow(unsafe_code)]
unsafe impl Send for Out {}
#[allow(unsafe_code)]
unsafe impl Sync for Out {}

/// The block's output tiles y = Aᵀ M A (+ bias) from M, laid out [position][tile][co] (co padded
/// to whole lanes), written into `y`; channels run in lanes.
#[allow(unsafe_code)]
fn transform_output(m: &[f32], g: &Geo, at: &[TileAt], bias: Option<&[f32]>, y: Out) {
    let (out_img, tb, cp) = (g.cout * g.ohw(), at.len(), padded(g.cout));
    let (mut mt, mut tmp, mut out) = (
        [[[0f32; LANES]; A]; A],
        [[[0f32; LANES]; A]; M],
        [[[0f32; LANES]; M]; M],
    );
    for (ti, t) in at.iter().enumerate() {
        let (oy0, ox) = ((t.y0 + 1) as usize, (t.x0 + 1) as usize);
        let (rows, cols) = (M.min(g.oh - oy0), M.min(g.ow - ox));
        for c0 in (0..g.cout).step_by(LANES) {
            let n = LANES.min(g.cout - c0);
            for (p, lane) in mt.iter_mut().flatten().enumerate() {
                *lane = m[(p * tb + ti) * cp + c0..][..LANES].try_into().expect("a lane");
            }
            output_2d(&mt, &mut tmp, &mut out);
            if let Some(b) = bias {
                let mut lane = [0f32; LANES];
                lane[..n].copy_from_slice(&b[c0..c0 + n]);
                for o in out.iter_mut().flatten() {
                    for (v, b) in o.iter_mut().zip(lane) {
                        *v += b;
                    }
                }
            }
            let base = t.b * out_img + c0 * g.ohw() + oy0 * g.ow + ox;
            assert!(
                base + (n - 1) * g.ohw() + (rows - 1) * g.ow + cols <= y.1,
                "winograd: tile outside the output"
            );
            // SAFETY: every element written lies in bounds (asserted) and belongs to tile `t` and
            // channels c0..c0 + n, which only this block of this call writes.
            #[allow(unsafe_code)]
            unsafe {
                #[cfg(target_arch = "x86_64")]
                if n == LANES && rows == M && cols == M && lanes::simd::avx() {
                    lanes::simd::scatter_avx(y.0.add(base), g.ohw(), g.ow, &out);
                    continue;
                }
                scatter_portable(y.0.add(base), g.ohw(), g.ow, &out, (n, rows, cols));
            }
        }
    }
}

/// y (B, Cout, H, W) = conv(x, w) [+ bias] for a layer that [`applies`].
pub(super) fn conv3x3(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geo) -> Vec<f32> {
    let u = transform_weights(w, g.cout, g.cin, false);
    run(x, &u, bias, g)
}

/// dX (B, Cin, H, W) from dY (B, Cout, H, W): the convolution of dY with the transposed, rotated
/// kernel (itself a 3×3 same convolution).
pub(super) fn input_grad(dy: &[f32], w: &[f32], g: &Geo) -> Vec<f32> {
    let u = transform_weights(w, g.cout, g.cin, true);
    let gt = Geo {
        cin: g.cout,
        cout: g.cin,
        ..*g
    };
    run(dy, &u, None, &gt)
}

/// Tiles per block: V and M of a block (36 · 64 tiles · channels) stay in the core's cache between
/// the transforms and the 36 GEMMs (32 and 128 measured slower on demo-64's layers).
const BLOCK_TILES: usize = 64;

fn run(x: &[f32], u: &[f32], bias: Option<&[f32]>, g: &Geo) -> Vec<f32> {
    let (th, tw) = tiles(g);
    let total = g.b * th * tw;
    let tb = BLOCK_TILES.min(total.div_ceil(crate::nn::conv::threads()).max(1));
    // Not zero-filled: the blocks write every element (a memset of the output was 4 % of a UNet
    // forward).
    let len = g.b * g.cout * g.ohw();
    let mut y: Vec<f32> = Vec::with_capacity(len);
    let out = Out(y.as_mut_ptr(), len);
    (0..total.div_ceil(tb)).into_par_iter().for_each(|blk| {
        let at: Vec<TileAt> = (blk * tb..total.min((blk + 1) * tb))
            .map(|t| tile_at(g, t))
            .collect();
        let n = at.len();
        // The block's V and M live in this thread's convolution scratch buffers.
        crate::nn::conv::with_scratch(|(v, m)| {
            let (cip, cop) = (padded(g.cin), padded(g.cout));
            crate::nn::conv::grow(v, cip * P * n);
            crate::nn::conv::grow(m, cop * P * n);
            let (v, m) = (&mut v[..cip * P * n], &mut m[..cop * P * n]);
            transform_input(x, g, &at, v);
            for p in 0..P {
                // M_p (Cout × n, stored n × Cout') = U_p (Cout × Cin) · V_p (Cin × n).
                crate::nn::conv::matmul_to(
                    &mut m[p * n * cop..][..n * cop],
                    (g.cout, n, g.cin),
                    (1, cop),
                    &u[p * cop..],
                    (1, P * cop),
                    &v[p * n * cip..],
                    (1, cip),
                    false,
                    Parallelism::None,
                );
            }
            transform_output(m, g, &at, bias, out);
        });
    });
    // SAFETY: the tiles (⌈oh/4⌉ × ⌈ow/4⌉ per image, clipped at the edges) cover every output pixel
    // of every image once, and each tile writes all channels (in lanes of 8, the last one partial),
    // so all `len` elements of the capacity have been initialised.
    #[allow(unsafe_code)]
    unsafe {
        y.set_len(len);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatch: demo-64's largest layers take the path at batch 1, its deepest small ones,
    /// strided layers and thin ones do not (whatever the thread count up to 16).
    #[test]
    fn applies_to_large_same_layers_only() {
        let strided = Geo {
            stride: 2,
            oh: 32,
            ow: 32,
            ..geo(8, 64, 64, 64, 64)
        };
        assert!(applies(&geo(1, 64, 64, 64, 64)));
        assert!(applies(&geo(8, 128, 128, 32, 32)));
        assert!(!applies(&geo(8, 256, 256, 8, 8)));
        assert!(!applies(&strided));
        assert!(!applies(&geo(8, 3, 64, 64, 64)));
    }

    /// A direct 3×3 same convolution in f64: the reference.
    fn direct(x: &[f32], w: &[f32], g: &Geo) -> Vec<f32> {
        let mut y = vec![0f32; g.b * g.cout * g.h * g.w];
        for b in 0..g.b {
            for co in 0..g.cout {
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        let mut s = 0f64;
                        for ci in 0..g.cin {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                                    if iy < g.h && ix < g.w {
                                        s += f64::from(x[((b * g.cin + ci) * g.h + iy) * g.w + ix])
                                            * f64::from(w[((co * g.cin + ci) * 3 + ky) * 3 + kx]);
                                    }
                                }
                            }
                        }
                        y[((b * g.cout + co) * g.h + oy) * g.w + ox] = s as f32;
                    }
                }
            }
        }
        y
    }

    fn geo(b: usize, cin: usize, cout: usize, h: usize, w: usize) -> Geo {
        Geo {
            b,
            cin,
            h,
            w,
            cout,
            kh: 3,
            kw: 3,
            stride: 1,
            pad: 1,
            oh: h,
            ow: w,
        }
    }

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.618 + seed).sin()).collect()
    }

    /// Forward (with a bias) and input gradient against the direct convolution, with the AVX gather and with the
    /// portable one forced: whole and partial tiles, channel counts off the 8-lane grid, batches
    /// spanning several blocks.
    #[test]
    fn winograd_equals_the_direct_convolution_on_both_gathers() {
        for (b, cin, cout, h, w) in [(2, 16, 16, 8, 8), (3, 19, 10, 13, 9), (5, 8, 24, 16, 20)] {
            let g = geo(b, cin, cout, h, w);
            let x = values(b * cin * h * w, 0.1);
            let wt = values(cout * cin * 9, 0.7);
            let bias = values(cout, 0.9);
            let mut want = direct(&x, &wt, &g);
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[i / (h * w) % cout];
            }
            // dX = conv(dY, w') with w'[ci][co] the rotated w[co][ci].
            let dy = values(b * cout * h * w, 0.5);
            let mut wt_t = vec![0f32; wt.len()];
            for co in 0..cout {
                for ci in 0..cin {
                    for k in 0..9 {
                        wt_t[(ci * cout + co) * 9 + 8 - k] = wt[(co * cin + ci) * 9 + k];
                    }
                }
            }
            let want_dx = direct(&dy, &wt_t, &geo(b, cout, cin, h, w));
            for portable in [false, true] {
                lanes::FORCE_PORTABLE.store(portable, std::sync::atomic::Ordering::Relaxed);
                for (got, want) in [
                    (conv3x3(&x, &wt, Some(&bias), &g), &want),
                    (input_grad(&dy, &wt, &g), &want_dx),
                ] {
                    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let err = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    // F(4×4, 3×3)'s rounding: ≈ 1e-5 of the output's scale (a wrong transform is O(1)).
                    assert!(
                        err <= 5e-5 * scale,
                        "{:?} portable {portable}: {err} of {scale}",
                        (b, cin, cout, h, w)
                    );
                }
            }
            lanes::FORCE_PORTABLE.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
