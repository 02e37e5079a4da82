//! Similarity transforms (Umeyama's least-squares fit) and bilinear warping of photos (the
//! differentiable resample of image tensors is [`super::affine_resample`]).

pub use super::affine_resample::AffineResample;

use image::RgbImage;

/// x' = a·x − b·y + tx,  y' = b·x + a·y + ty  (rotation, uniform scale, translation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse map.
    pub fn inverse(&self) -> Self {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Self {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }

    /// Scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// Least-squares similarity taking `src` points onto `dst` (Umeyama 1991, no reflection).
    pub fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Self {
        assert!(
            src.len() == dst.len() && src.len() >= 2,
            "need at least two point pairs"
        );
        let n = src.len() as f64;
        let mean = |p: &[[f64; 2]]| {
            let s = p.iter().fold([0.0, 0.0], |m, q| [m[0] + q[0], m[1] + q[1]]);
            [s[0] / n, s[1] / n]
        };
        let (ms, md) = (mean(src), mean(dst));
        // For a similarity, the optimum is closed-form in complex numbers: z' = w·z + t.
        let (mut re, mut im, mut var) = (0.0, 0.0, 0.0);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
            let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
            re += sx * dx + sy * dy;
            im += sx * dy - sy * dx;
            var += sx * sx + sy * sy;
        }
        let (a, b) = (re / var, im / var);
        Self {
            a,
            b,
            tx: md[0] - (a * ms[0] - b * ms[1]),
            ty: md[1] - (b * ms[0] + a * ms[1]),
        }
    }
}

/// Samples `out_w × out_h` pixels from `img` where output pixel (u, v) reads the source at
/// `out_to_src(u, v)`, bilinearly, black outside. Returns CHW f32 in [0, 255].
pub fn warp_bilinear(img: &RgbImage, out_to_src: &Similarity, out_w: usize, out_h: usize) -> Vec<f32> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let px = |x: i64, y: i64, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            raw[((y * w + x) * 3) as usize + c] as f64
        }
    };
    let mut out = vec![0f32; 3 * out_w * out_h];
    for v in 0..out_h {
        for u in 0..out_w {
            let [x, y] = out_to_src.apply([u as f64, v as f64]);
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x0 + 1, y0, c) * fx;
                let bottom = px(x0, y0 + 1, c) * (1.0 - fx) + px(x0 + 1, y0 + 1, c) * fx;
                out[c * out_w * out_h + v * out_w + u] = (top * (1.0 - fy) + bottom * fy) as f32;
            }
        }
    }
    out
}

/// Halves an image with a separable [1 4 6 4 1]/16 low-pass filter (anti-aliasing before large
/// downscales, as dlib's `pyramid_down<2>` does). Output pixel i is centred on input pixel 2i.
pub fn pyramid_down(img: &RgbImage) -> RgbImage {
    const K: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (ow, oh) = ((w + 1) / 2, (h + 1) / 2);
    let clamp = |v: i64, n: i64| v.clamp(0, n - 1);
    // Horizontal pass at output columns, then vertical pass at output rows.
    let mut tmp = vec![0f32; (ow * h * 3) as usize];
    for y in 0..h {
        for ox in 0..ow {
            for c in 0..3 {
                let s: f32 = (0..5)
                    .map(|k| K[k] * img.get_pixel(clamp(2 * ox + k as i64 - 2, w) as u32, y as u32)[c] as f32)
                    .sum();
                tmp[((y * ow + ox) * 3) as usize + c] = s;
            }
        }
    }
    RgbImage::from_fn(ow as u32, oh as u32, |ox, oy| {
        let mut p = [0u8; 3];
        for (c, out) in p.iter_mut().enumerate() {
            let s: f32 = (0..5)
                .map(|k| {
                    K[k] * tmp[((clamp(2 * oy as i64 + k as i64 - 2, h) * ow + ox as i64) * 3) as usize + c]
                })
                .sum();
            *out = s.round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_known_similarity_and_inverts() {
        let t = Similarity {
            a: 1.2,
            b: -0.3,
            tx: 5.0,
            ty: -2.0,
        };
        let src = [[0.0, 0.0], [10.0, 0.0], [3.0, 7.0], [-4.0, 2.0]];
        let dst: Vec<[f64; 2]> = src.iter().map(|p| t.apply(*p)).collect();
        let f = Similarity::fit(&src, &dst);
        for (x, y) in [(f.a, t.a), (f.b, t.b), (f.tx, t.tx), (f.ty, t.ty)] {
            assert!((x - y).abs() < 1e-9);
        }
        let back = f.inverse().apply(f.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-9 && (back[1] - 4.0).abs() < 1e-9);
    }

    #[test]
    fn pyramid_down_halves_and_keeps_flat_regions() {
        let img = RgbImage::from_pixel(10, 7, image::Rgb([100, 50, 200]));
        let d = pyramid_down(&img);
        assert_eq!(d.dimensions(), (5, 4));
        assert!(d.pixels().all(|p| p.0 == [100, 50, 200]));
    }
}
