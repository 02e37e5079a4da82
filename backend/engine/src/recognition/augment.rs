//! Training augmentations of the CemiFace FR recipe (docs/paper.md §4.1), following torchvision's
//! definitions: RandomResizedCrop (scale [0.9, 1], ratio [3/4, 4/3]), RandomHorizontalFlip (p 0.5),
//! ColorJitter (brightness = contrast = saturation = hue = 0.1, in random order), then
//! RandomErasing (p 0.5, scale [0.02, 0.1], ratio [0.3, 3.3], value 0 on the normalised image).
//! All randomness comes from a `NoiseRng`, so a (seed, step) reproduces a batch.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::noise::NoiseRng;

/// Augmentation settings (each can be switched off by its neutral value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// RandomResizedCrop scale range ([1, 1] = off).
    pub crop_scale: [f64; 2],
    pub flip: bool,
    /// ColorJitter strength for brightness, contrast, saturation and hue (0 = off).
    pub color_jitter: f64,
    /// RandomErasing area range ([0, 0] = off).
    pub erase_scale: [f64; 2],
}

impl AugmentConfig {
    /// The paper's recipe.
    pub fn paper() -> Self {
        Self {
            crop_scale: [0.9, 1.0],
            flip: true,
            color_jitter: 0.1,
            erase_scale: [0.02, 0.1],
        }
    }
}

fn uniform(rng: &mut NoiseRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (rng.next_u32() as f64 / 4294967296.0)
}

fn below(rng: &mut NoiseRng, n: u32) -> u32 {
    ((rng.next_u32() as u64 * n as u64) >> 32) as u32
}

/// torchvision's RandomResizedCrop box (x, y, w, h).
fn crop_box(rng: &mut NoiseRng, w: u32, h: u32, scale: [f64; 2]) -> (u32, u32, u32, u32) {
    let area = (w * h) as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale[0], scale[1]);
        let ratio = uniform(rng, lr0, lr1).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let y = below(rng, h - ch + 1);
            let x = below(rng, w - cw + 1);
            return (x, y, cw, ch);
        }
    }
    (0, 0, w, h)
}

fn gray(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn hue_shift(p: [f32; 3], shift: f32) -> [f32; 3] {
    let (r, g, b) = (p[0], p[1], p[2]);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if d <= 0.0 {
        return p;
    }
    let h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    } / 6.0;
    let h = (h + shift).rem_euclid(1.0) * 6.0;
    let (s, v) = (d / max, max);
    let f = h - h.floor();
    let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match h.floor() as i32 % 6 {
        0 => [v, t, pp],
        1 => [q, v, pp],
        2 => [pp, v, t],
        3 => [pp, q, v],
        4 => [t, pp, v],
        _ => [v, pp, q],
    }
}

/// Colour jitter on pixels in [0, 1] (HWC), torchvision's four adjustments in random order.
fn jitter(px: &mut [[f32; 3]], strength: f64, rng: &mut NoiseRng) {
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, below(rng, i as u32 + 1) as usize);
    }
    let factors: Vec<f32> = (0..3)
        .map(|_| uniform(rng, 1.0 - strength, 1.0 + strength) as f32)
        .collect();
    let hue = uniform(rng, -strength, strength) as f32;
    let clamp = |v: f32| v.clamp(0.0, 1.0);
    for op in order {
        match op {
            0 => px.iter_mut().for_each(|p| *p = p.map(|v| clamp(v * factors[0]))),
            1 => {
                let mean = px.iter().map(|p| gray(*p)).sum::<f32>() / px.len() as f32;
                px.iter_mut()
                    .for_each(|p| *p = p.map(|v| clamp((v - mean) * factors[1] + mean)));
            }
            2 => px.iter_mut().for_each(|p| {
                let g = gray(*p);
                *p = p.map(|v| clamp((v - g) * factors[2] + g));
            }),
            _ => px.iter_mut().for_each(|p| *p = hue_shift(*p, hue)),
        }
    }
}

/// Augments an RGB image and returns it as CHW values in [−1, 1] at `size`×`size`.
pub fn augment(img: &RgbImage, size: u32, cfg: &AugmentConfig, rng: &mut NoiseRng) -> Vec<f32> {
    let (x, y, w, h) = crop_box(rng, img.width(), img.height(), cfg.crop_scale);
    let cropped = image::imageops::crop_imm(img, x, y, w, h).to_image();
    let mut out = image::imageops::resize(&cropped, size, size, image::imageops::FilterType::Triangle);
    if cfg.flip && below(rng, 2) == 1 {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    let mut px: Vec<[f32; 3]> = out.pixels().map(|p| p.0.map(|v| v as f32 / 255.0)).collect();
    if cfg.color_jitter > 0.0 {
        jitter(&mut px, cfg.color_jitter, rng);
    }
    let n = (size * size) as usize;
    let mut chw: Vec<f32> = (0..3)
        .flat_map(|c| px.iter().map(move |p| p[c] * 2.0 - 1.0))
        .collect();
    if cfg.erase_scale[1] > 0.0 && below(rng, 2) == 1 {
        let area = n as f64;
        let (lr0, lr1) = (0.3f64.ln(), 3.3f64.ln());
        for _ in 0..10 {
            let target = area * uniform(rng, cfg.erase_scale[0], cfg.erase_scale[1]);
            let ratio = uniform(rng, lr0, lr1).exp();
            let (eh, ew) = (
                (target * ratio).sqrt().round() as u32,
                (target / ratio).sqrt().round() as u32,
            );
            if eh < size && ew < size && eh > 0 && ew > 0 {
                let (ey, ex) = (below(rng, size - eh + 1), below(rng, size - ew + 1));
                for c in 0..3 {
                    for yy in ey..ey + eh {
                        let row = c * n + (yy * size) as usize;
                        chw[row + ex as usize..row + (ex + ew) as usize].fill(0.0);
                    }
                }
                break;
            }
        }
    }
    chw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image() -> RgbImage {
        RgbImage::from_fn(112, 112, |x, y| image::Rgb([(x * 2) as u8, (y * 2) as u8, 128]))
    }

    #[test]
    fn crops_keep_the_area_in_range_and_switching_off_is_the_identity() {
        let mut rng = NoiseRng::new(1);
        for _ in 0..200 {
            let (x, y, w, h) = crop_box(&mut rng, 112, 112, [0.9, 1.0]);
            let frac = (w * h) as f64 / (112.0 * 112.0);
            assert!(
                (0.85..=1.0).contains(&frac) && x + w <= 112 && y + h <= 112,
                "{frac}"
            );
        }
        let off = AugmentConfig {
            crop_scale: [1.0, 1.0],
            flip: false,
            color_jitter: 0.0,
            erase_scale: [0.0, 0.0],
        };
        let img = test_image();
        let v = augment(&img, 112, &off, &mut rng);
        let plain: Vec<f32> = (0..3)
            .flat_map(|c| img.pixels().map(move |p| p[c] as f32 / 255.0 * 2.0 - 1.0))
            .collect();
        assert!(v.iter().zip(&plain).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn hue_shift_round_trips_and_jitter_is_seeded() {
        let p = [0.8, 0.3, 0.1];
        let q = hue_shift(hue_shift(p, 0.1), -0.1);
        assert!(p.iter().zip(q).all(|(a, b)| (a - b).abs() < 1e-5), "{q:?}");
        assert_eq!(hue_shift([0.5; 3], 0.3), [0.5; 3]);
        let img = test_image();
        let cfg = AugmentConfig::paper();
        let a = augment(&img, 112, &cfg, &mut NoiseRng::new(5));
        let b = augment(&img, 112, &cfg, &mut NoiseRng::new(5));
        let c = augment(&img, 112, &cfg, &mut NoiseRng::new(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
