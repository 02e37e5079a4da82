//! Moving lanes: the transposing load of 6×6 input patches of 8 channels into lanes (`gather`) and
//! the store of 4×4 output tiles from lanes into 8 channel planes (`scatter`), with AVX where the
//! processor has it and portable code elsewhere (the reference in the tests; forced with
//! [`FORCE_PORTABLE`]).

use super::transform::Tile6;
use super::{Geo, Lane, TileAt, A, LANES, M};

/// d[i][j][l] = x[corner + l·plane + i·w + j]: the 6×6 patches at `corner` of 8 consecutive
/// channel planes, channels in lanes (the transposing load of the input transform).
#[inline(always)]
pub(super) fn gather(x: &[f32], corner: usize, plane: usize, w: usize, d: &mut Tile6) {
    #[cfg(target_arch = "x86_64")]
    if simd::avx() && corner + (LANES - 1) * plane + (A - 1) * w + LANES <= x.len() {
        // SAFETY: AVX is present (checked), and every 8-wide row read lies inside `x` (checked).
        #[allow(unsafe_code)]
        unsafe {
            simd::gather_avx(x, corner, plane, w, d);
        }
        return;
    }
    gather_portable(x, corner, plane, w, d);
}

/// [`gather`] without SIMD intrinsics.
fn gather_portable(x: &[f32], corner: usize, plane: usize, w: usize, d: &mut Tile6) {
    for l in 0..LANES {
        let patch = &x[corner + l * plane..][..(A - 1) * w + A];
        for (i, row) in d.iter_mut().enumerate() {
            let s: &[f32; A] = patch[i * w..][..A].try_into().expect("a patch row");
            for (lane, &v) in row.iter_mut().zip(s) {
                lane[l] = v;
            }
        }
    }
}

/// [`gather`] for a tile whose patch reaches into the zero padding, or for fewer than 8 channels
/// (`n`, from plane `start` on): the rest of `d` is zero.
pub(super) fn gather_edge(
    x: &[f32],
    start: usize,
    plane: usize,
    g: &Geo,
    t: &TileAt,
    n: usize,
    d: &mut Tile6,
) {
    *d = [[[0f32; LANES]; A]; A];
    for l in 0..n {
        let src = &x[start + l * plane..][..plane];
        for (i, row) in d.iter_mut().enumerate() {
            let y = t.y0 + i as isize;
            if y < 0 || y as usize >= g.h {
                continue;
            }
            for (j, lane) in row.iter_mut().enumerate() {
                let xx = t.x0 + j as isize;
                if xx >= 0 && (xx as usize) < g.w {
                    lane[l] = src[y as usize * g.w + xx as usize];
                }
            }
        }
    }
}

/// The AVX transposes of the gather and the scatter (every x86-64 processor this project meets has AVX; the
/// portable code is the fallback and the reference in the tests).
#[cfg(target_arch = "x86_64")]
pub(super) mod simd {
    use super::super::{Lane, A, M};
    use super::Tile6;
    use std::arch::x86_64::{
        _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_loadu_ps, _mm256_permute2f128_ps,
        _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps, _mm_storeu_ps,
    };

    /// Whether the processor has AVX (cached by the standard library's detection) and the
    /// portable path is not forced.
    #[inline(always)]
    pub fn avx() -> bool {
        !super::force_portable() && std::arch::is_x86_feature_detected!("avx")
    }

    /// [`super::gather`] with one 8 × 8 register transpose per patch row.
    ///
    /// # Safety
    /// AVX must be available and `corner + 7·plane + 5·w + 8 <= x.len()`.
    #[target_feature(enable = "avx")]
    #[allow(unsafe_code)]
    pub unsafe fn gather_avx(x: &[f32], corner: usize, plane: usize, w: usize, d: &mut Tile6) {
        debug_assert!(corner + 7 * plane + (A - 1) * w + 8 <= x.len());
        for (i, row) in d.iter_mut().enumerate() {
            // SAFETY: the caller guarantees these 8 reads of 8 floats lie inside `x`.
            let p = unsafe { x.as_ptr().add(corner + i * w) };
            let r: [_; 8] = std::array::from_fn(|l| unsafe { _mm256_loadu_ps(p.add(l * plane)) });
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            // Column j of the 8 rows: element j of the patch row in every channel.
            let cols = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
            ];
            for (lane, c) in row.iter_mut().zip(cols) {
                // SAFETY: a lane is 8 floats.
                unsafe { _mm256_storeu_ps(lane.as_mut_ptr(), c) };
            }
        }
    }

    /// [`super::scatter_portable`] of a whole 4×4 tile of 8 channels: per tile row, one 4 × 8
    /// register transpose and eight 4-wide stores.
    ///
    /// # Safety
    /// AVX must be available; `y[l·plane + i·w + j]` for l < 8, i, j < 4 valid for writes and
    /// written by nobody else meanwhile.
    #[target_feature(enable = "avx")]
    #[allow(unsafe_code)]
    pub unsafe fn scatter_avx(y: *mut f32, plane: usize, w: usize, out: &[[Lane; M]; M]) {
        for (i, o) in out.iter().enumerate() {
            // SAFETY: a lane is 8 floats.
            let [o0, o1, o2, o3] = std::array::from_fn(|j| unsafe { _mm256_loadu_ps(o[j].as_ptr()) });
            let t0 = _mm256_unpacklo_ps(o0, o1);
            let t1 = _mm256_unpackhi_ps(o0, o1);
            let t2 = _mm256_unpacklo_ps(o2, o3);
            let t3 = _mm256_unpackhi_ps(o2, o3);
            // Channels (0, 4), (1, 5), (2, 6), (3, 7) in the low and high halves.
            let s = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ];
            for (l, v) in s.into_iter().enumerate() {
                // SAFETY: the caller's contract, channels l and l + 4 of tile row i.
                unsafe {
                    _mm_storeu_ps(y.add(l * plane + i * w), _mm256_castps256_ps128(v));
                    _mm_storeu_ps(y.add((l + 4) * plane + i * w), _mm256_extractf128_ps::<1>(v));
                }
            }
        }
    }
}

/// Set by tests to run the portable gather and scatter on a processor with AVX.
pub(super) static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[inline(always)]
fn force_portable() -> bool {
    FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed)
}

/// y[l·plane + i·w + j] = out[i][j][l] for the first `n` channels, `rows` × `cols` of the tile.
///
/// # Safety
/// Every such element must be valid for writes and written by nobody else meanwhile.
#[allow(unsafe_code)]
pub(super) unsafe fn scatter_portable(
    y: *mut f32,
    plane: usize,
    w: usize,
    out: &[[Lane; M]; M],
    (n, rows, cols): (usize, usize, usize),
) {
    for l in 0..n {
        for (i, orow) in out.iter().enumerate().take(rows) {
            for (j, o) in orow.iter().enumerate().take(cols) {
                // SAFETY: the caller's contract.
                unsafe { *y.add(l * plane + i * w + j) = o[l] };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.618 + seed).sin()).collect()
    }

    #[test]
    fn the_avx_gather_equals_the_portable_one() {
        let (w, h, c) = (13, 11, 9);
        let x = values(w * h * c, 0.3);
        for corner in [0, 1, w + 1, 2 * w + 5, h * w + 3] {
            let (mut portable, mut fast) = ([[[0f32; LANES]; A]; A], [[[1f32; LANES]; A]; A]);
            gather_portable(&x, corner, w * h, w, &mut portable);
            gather(&x, corner, w * h, w, &mut fast);
            assert_eq!(portable, fast, "corner {corner}");
            assert!(portable[5][5].iter().any(|&v| v != 0.0));
        }
    }
}
