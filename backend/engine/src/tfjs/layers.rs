//! Layers of the face-api tfjs models, with TensorFlow's padding rules ('SAME' pads the extra row and
//! column at the bottom/right), built from tfjs weight names via a `VarBuilder`.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::tfjs::hwio_to_oihw;
use crate::Result;

/// Pads (B, C, H, W) the way TF 'SAME' does for a k×k window with stride s, with `value`.
pub fn pad_same(x: &Tensor, k: usize, s: usize, value: f32) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let total = |n: usize| (n.div_ceil(s).saturating_sub(1) * s + k).saturating_sub(n);
    let (ph, pw) = (total(h), total(w));
    if ph == 0 && pw == 0 {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return x
            .pad_with_zeros(2, ph / 2, ph - ph / 2)?
            .pad_with_zeros(3, pw / 2, pw - pw / 2);
    }
    let padded = x
        .pad_with_zeros(2, ph / 2, ph - ph / 2)?
        .pad_with_zeros(3, pw / 2, pw - pw / 2)?;
    let mask = x
        .ones_like()?
        .pad_with_zeros(2, ph / 2, ph - ph / 2)?
        .pad_with_zeros(3, pw / 2, pw - pw / 2)?;
    // padded + (1 − mask)·value
    padded + ((mask.affine(-1.0, 1.0)?) * value as f64)?
}

/// TF max-pool with 'SAME' padding.
pub fn max_pool_same(x: &Tensor, k: usize, s: usize) -> candle_core::Result<Tensor> {
    pad_same(x, k, s, -1e30)?.max_pool2d_with_stride(k, s)
}

/// A plain convolution `{prefix}/filters` (HWIO) + `{prefix}/bias`.
#[derive(Debug, Clone)]
pub struct Conv {
    w: Tensor,
    b: Tensor,
    k: usize,
    stride: usize,
    same: bool,
}

impl Conv {
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, k: usize, stride: usize, same: bool) -> Result<Self> {
        Ok(Self {
            w: hwio_to_oihw(&vb.get((k, k, cin, cout), "filters")?)?,
            b: vb.get(cout, "bias")?.reshape((1, cout, 1, 1))?,
            k,
            stride,
            same,
        })
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = if self.same {
            pad_same(x, self.k, self.stride, 0.0)?
        } else {
            x.clone()
        };
        crate::nn::conv::conv2d(&x, &self.w, self.stride, 0)?.broadcast_add(&self.b)
    }
}

/// Depthwise 3×3 (`depthwise_filter`) → pointwise 1×1 (`pointwise_filter`) → + `bias`.
#[derive(Debug, Clone)]
pub struct SeparableConv {
    dw: Tensor,
    pw: Tensor,
    b: Tensor,
    stride: usize,
}

impl SeparableConv {
    pub fn new(vb: VarBuilder, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        let dw = vb
            .get((3, 3, cin, 1), "depthwise_filter")?
            .permute((2, 3, 0, 1))?
            .contiguous()?;
        Ok(Self {
            dw,
            pw: hwio_to_oihw(&vb.get((1, 1, cin, cout), "pointwise_filter")?)?,
            b: vb.get(cout, "bias")?.reshape((1, cout, 1, 1))?,
            stride,
        })
    }
}

impl Module for SeparableConv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = pad_same(x, 3, self.stride, 0.0)?;
        let x = crate::nn::depthwise::depthwise_conv2d(&x, &self.dw, self.stride)?;
        crate::nn::conv::conv2d(&x, &self.pw, 1, 0)?.broadcast_add(&self.b)
    }
}

/// face-api's `toBatchTensor` + `normalize`: the `w × h` region at (`x0`, `y0`) of `img` is pasted
/// into a black square of side max(w, h) at `offset`, resized to `size` (TF bilinear), and
/// normalised as (rgb − mean) / 255. Returns (1, 3, size, size).
pub fn net_input(
    img: &image::RgbImage,
    (x0, y0, w, h): (u32, u32, usize, usize),
    (px, py): (usize, usize),
    size: usize,
    mean: [f32; 3],
    device: &candle_core::Device,
) -> Result<Tensor> {
    let side = w.max(h);
    let mut chw = vec![0f32; 3 * side * side];
    for y in 0..h {
        for x in 0..w {
            let p = img.get_pixel(x0 + x as u32, y0 + y as u32);
            for c in 0..3 {
                chw[c * side * side + (y + py) * side + x + px] = p[c] as f32;
            }
        }
    }
    let mut small = resize_bilinear_tf(&chw, 3, side, side, size, size);
    let plane = size * size;
    for (c, m) in mean.iter().enumerate() {
        small[c * plane..(c + 1) * plane]
            .iter_mut()
            .for_each(|v| *v = (*v - m) / 255.0);
    }
    Ok(Tensor::from_vec(small, (1, 3, size, size), device)?)
}

/// Bilinear resize of CHW f32 data as `tf.image.resizeBilinear(align_corners = false,
/// half_pixel_centers = false)`: output pixel i reads source coordinate i · in / out.
pub fn resize_bilinear_tf(chw: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = vec![0f32; c * oh * ow];
    let (sy, sx) = (h as f32 / oh as f32, w as f32 / ow as f32);
    for y in 0..oh {
        let fy = y as f32 * sy;
        let (y0, dy) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..ow {
            let fx = x as f32 * sx;
            let (x0, dx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(w - 1);
            for ch in 0..c {
                let p = |yy: usize, xx: usize| chw[ch * h * w + yy * w + xx];
                let top = p(y0, x0) + (p(y0, x1) - p(y0, x0)) * dx;
                let bottom = p(y1, x0) + (p(y1, x1) - p(y1, x0)) * dx;
                out[ch * oh * ow + y * ow + x] = top + (bottom - top) * dy;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn same_padding_puts_the_extra_row_at_the_end() {
        let x = Tensor::ones((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(pad_same(&x, 3, 2, 0.0).unwrap().dims(), &[1, 1, 5, 5]); // (0, 1)
        assert_eq!(pad_same(&x, 3, 1, 0.0).unwrap().dims(), &[1, 1, 6, 6]); // (1, 1)
        let p = pad_same(&x, 3, 2, 0.0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        assert_eq!(p[0][0][0], 1.0); // nothing added at the top-left
        assert_eq!(p[0][4][4], 0.0);
        let x = Tensor::new(&[[[[-5f32, -6., -7.]]]], &Device::Cpu).unwrap();
        let m = max_pool_same(&x, 2, 2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(m, vec![-5.0, -7.0]); // padding never wins
    }

    #[test]
    fn resize_matches_tf_sampling() {
        let src = vec![0f32, 10., 20., 30.]; // 1×1×4
        assert_eq!(resize_bilinear_tf(&src, 1, 1, 4, 1, 2), vec![0.0, 20.0]);
        assert_eq!(
            resize_bilinear_tf(&src, 1, 1, 4, 1, 8),
            vec![0., 5., 10., 15., 20., 25., 30., 30.]
        );
    }
}
