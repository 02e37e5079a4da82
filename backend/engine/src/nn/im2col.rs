//! The im2col matrix of a convolution and its adjoint col2im: the data movement around the GEMMs of
//! [`crate::nn::conv`] (and of the transposed convolution, which runs the same kernels).
//!
//! For one image `x` (Cin × H × W) the column matrix is K × HoWo with K = Cin·kh·kw: row
//! (ci, ky, kx) holds, for every output position (oy, ox), the input pixel
//! x[ci, oy·stride + ky − pad, ox·stride + kx − pad] (zero outside the image). col2im adds such a
//! matrix back onto an image gradient. Each input channel owns kh·kw consecutive rows, so both run
//! channel by channel, in parallel when the caller asks (the batch is too small to keep every thread
//! busy with whole images: at batch 1 they were a serial tenth of a UNet training step).

use rayon::prelude::*;

/// Geometry of one convolution (square stride and padding, no dilation or groups).
#[derive(Debug, Clone, Copy)]
pub(super) struct Geo {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geo {
    pub fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    /// A 1×1 convolution without stride or padding: its column matrix is the image itself.
    pub fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// The column rows of one input channel (kh·kw rows of HoWo).
    fn channel_rows(&self) -> usize {
        self.kh * self.kw * self.ohw()
    }
}

/// The output columns `[lo, hi)` whose input column `ox·stride + kx − pad` lies inside the image:
/// everything outside reads the zero padding.
fn valid_cols(g: &Geo, kx: usize) -> (usize, usize) {
    let lo = g.pad.saturating_sub(kx).div_ceil(g.stride).min(g.ow);
    let hi = if g.w + g.pad > kx {
        ((g.w - 1 + g.pad - kx) / g.stride + 1).min(g.ow)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// The input row read by output row `oy` at kernel row `ky`, if it lies inside the image.
fn input_row(g: &Geo, oy: usize, ky: usize) -> Option<usize> {
    (oy * g.stride + ky).checked_sub(g.pad).filter(|&iy| iy < g.h)
}

/// Fills one channel's kh·kw column rows from that channel's plane `x` (H × W); row r starts at
/// `col[r · stride]` (HoWo for one image's matrix, B·HoWo for the batch-stacked one).
fn im2col_channel(x: &[f32], g: &Geo, col: &mut [f32], stride: usize) {
    let ohw = g.ohw();
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let row = &mut col[(ky * g.kw + kx) * stride..][..ohw];
            let (lo, hi) = valid_cols(g, kx);
            for oy in 0..g.oh {
                let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                let Some(iy) = input_row(g, oy, ky) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = &x[iy * g.w..][..g.w];
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                let start = lo * g.stride + kx - g.pad;
                if g.stride == 1 {
                    dst[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                } else {
                    for (d, s) in dst[lo..hi].iter_mut().zip(src[start..].iter().step_by(g.stride)) {
                        *d = *s;
                    }
                }
            }
        }
    }
}

/// Adds one channel's kh·kw column rows (row r at `col[r · stride]`) back onto that channel's
/// gradient plane `dx` (H × W).
fn col2im_channel(col: &[f32], g: &Geo, dx: &mut [f32], stride: usize) {
    let ohw = g.ohw();
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let row = &col[(ky * g.kw + kx) * stride..][..ohw];
            let (lo, hi) = valid_cols(g, kx);
            if lo == hi {
                continue;
            }
            for oy in 0..g.oh {
                let Some(iy) = input_row(g, oy, ky) else {
                    continue;
                };
                let src = &row[oy * g.ow + lo..oy * g.ow + hi];
                let start = lo * g.stride + kx - g.pad;
                let dst = &mut dx[iy * g.w..][..g.w];
                if g.stride == 1 {
                    for (d, s) in dst[start..start + hi - lo].iter_mut().zip(src) {
                        *d += s;
                    }
                } else {
                    for (d, s) in dst[start..].iter_mut().step_by(g.stride).zip(src) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// Fills `col` (K × HoWo) from one image `x` (Cin × H × W); channels in parallel if `par`.
pub(super) fn im2col(x: &[f32], g: &Geo, col: &mut [f32], par: bool) {
    let (plane, rows) = (g.h * g.w, g.channel_rows());
    let col = &mut col[..g.cin * rows];
    if par {
        col.par_chunks_mut(rows)
            .zip(x.par_chunks(plane))
            .for_each(|(c, xc)| im2col_channel(xc, g, c, g.ohw()));
    } else {
        col.chunks_mut(rows)
            .zip(x.chunks(plane))
            .for_each(|(c, xc)| im2col_channel(xc, g, c, g.ohw()));
    }
}

/// Adds `col` (K × HoWo) back into one image gradient `dx` (Cin × H × W); channels in parallel if
/// `par`.
pub(super) fn col2im(col: &[f32], g: &Geo, dx: &mut [f32], par: bool) {
    let (plane, rows) = (g.h * g.w, g.channel_rows());
    let dx = &mut dx[..g.cin * plane];
    if par {
        dx.par_chunks_mut(plane)
            .zip(col.par_chunks(rows))
            .for_each(|(d, c)| col2im_channel(c, g, d, g.ohw()));
    } else {
        dx.chunks_mut(plane)
            .zip(col.chunks(rows))
            .for_each(|(d, c)| col2im_channel(c, g, d, g.ohw()));
    }
}

/// The whole batch's column matrix, K × B·HoWo: image b's columns of row r at
/// `col[r · B·HoWo + b · HoWo]`, so one GEMM covers the batch (see [`crate::nn::stacked`]). Input
/// channels in parallel: each owns kh·kw whole rows.
pub(super) fn im2col_stacked(x: &[f32], g: &Geo, col: &mut [f32]) {
    let (plane, ohw, n) = (g.h * g.w, g.ohw(), g.b * g.ohw());
    let rows = g.kh * g.kw * n;
    col[..g.cin * rows]
        .par_chunks_mut(rows)
        .enumerate()
        .for_each(|(ci, c)| {
            for b in 0..g.b {
                let xc = &x[(b * g.cin + ci) * plane..][..plane];
                im2col_channel(xc, g, &mut c[b * ohw..], n);
            }
        });
}

/// Adds a batch-stacked column matrix (K × B·HoWo, as [`im2col_stacked`] lays it out) back onto
/// the batch's input gradient `dx` (B × Cin × H × W). Input channels in parallel.
pub(super) fn col2im_stacked(col: &[f32], g: &Geo, dx: &mut [f32]) {
    let (plane, ohw, n) = (g.h * g.w, g.ohw(), g.b * g.ohw());
    let rows = g.kh * g.kw * n;
    // Channel ci of every image: planes ci, Cin + ci, 2·Cin + ci, … of dx.
    let mut planes: Vec<Vec<&mut [f32]>> = (0..g.cin).map(|_| Vec::with_capacity(g.b)).collect();
    for (i, p) in dx[..g.b * g.cin * plane].chunks_mut(plane).enumerate() {
        planes[i % g.cin].push(p);
    }
    planes
        .into_par_iter()
        .zip(col[..g.cin * rows].par_chunks(rows))
        .for_each(|(ps, c)| {
            for (b, d) in ps.into_iter().enumerate() {
                col2im_channel(&c[b * ohw..], g, d, n);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(b: usize, cin: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Geo {
        Geo {
            b,
            cin,
            h,
            w,
            cout: 1,
            kh: k,
            kw: k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        }
    }

    /// The definition, element by element.
    fn im2col_reference(x: &[f32], g: &Geo) -> Vec<f32> {
        let mut col = Vec::new();
        for ci in 0..g.cin {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let (iy, ix) = (
                                (oy * g.stride + ky) as isize - g.pad as isize,
                                (ox * g.stride + kx) as isize - g.pad as isize,
                            );
                            let inside = (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                            col.push(if inside {
                                x[(ci * g.h + iy as usize) * g.w + ix as usize]
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn im2col_and_col2im_match_the_definition_serial_and_parallel() {
        for g in [
            geo(1, 3, 7, 9, 3, 1, 1),
            geo(1, 4, 11, 8, 5, 2, 2),
            geo(1, 2, 9, 9, 7, 3, 0),
            geo(1, 5, 4, 6, 1, 1, 0),
        ] {
            let x: Vec<f32> = (0..g.cin * g.h * g.w).map(|i| (i as f32 * 0.37).sin()).collect();
            let want = im2col_reference(&x, &g);
            for par in [false, true] {
                // A buffer longer than needed (as the per-thread scratch is) must keep its tail.
                let mut col = vec![f32::NAN; want.len() + 5];
                im2col(&x, &g, &mut col, par);
                assert_eq!(&col[..want.len()], &want[..], "im2col {g:?} par {par}");
                assert!(col[want.len()..].iter().all(|v| v.is_nan()));
            }
            // col2im is im2col's adjoint: <im2col(x), c> = <x, col2im(c)>, and both paths agree.
            let c: Vec<f32> = (0..want.len()).map(|i| (i as f32 * 0.11).cos()).collect();
            let lhs: f64 = want.iter().zip(&c).map(|(a, b)| (*a as f64) * (*b as f64)).sum();
            let (mut serial, mut parallel) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            col2im(&c, &g, &mut serial, false);
            col2im(&c, &g, &mut parallel, true);
            assert_eq!(serial, parallel, "col2im {g:?}");
            let rhs: f64 = x
                .iter()
                .zip(&serial)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
                "adjoint {g:?}: {lhs} vs {rhs}"
            );
        }
    }

    /// The batch-stacked matrix holds each image's own matrix in its column block, and its col2im
    /// adds each block back onto that image.
    #[test]
    fn stacked_blocks_are_the_images_own_matrices() {
        for g in [
            geo(3, 4, 6, 5, 3, 1, 1),
            geo(2, 3, 9, 9, 4, 2, 1),
            geo(4, 2, 1, 1, 1, 1, 0),
        ] {
            let img = g.cin * g.h * g.w;
            let x: Vec<f32> = (0..g.b * img).map(|i| (i as f32 * 0.23).sin()).collect();
            let (k, ohw, n) = (g.k(), g.ohw(), g.b * g.ohw());
            let mut col = vec![f32::NAN; k * n];
            im2col_stacked(&x, &g, &mut col);
            let c: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.17).cos()).collect();
            let mut dx = vec![0.5f32; g.b * img];
            col2im_stacked(&c, &g, &mut dx);
            // Image b's column block of a stacked matrix, as one image's K × HoWo matrix.
            let block = |m: &[f32], b: usize| -> Vec<f32> {
                (0..k)
                    .flat_map(|r| m[r * n + b * ohw..][..ohw].to_vec())
                    .collect()
            };
            for b in 0..g.b {
                let want = im2col_reference(&x[b * img..][..img], &g);
                assert_eq!(block(&col, b), want, "im2col block {b} of {g:?}");
                let mut want_dx = vec![0.5f32; img];
                col2im(&block(&c, b), &g, &mut want_dx, false);
                assert_eq!(&dx[b * img..][..img], &want_dx[..], "col2im block {b} of {g:?}");
            }
        }
    }
}
