//! face-api's 68-point landmark net (`faceLandmarkNet/FaceLandmark68Net.ts` over
//! `faceFeatureExtractor/`): four dense blocks of separable convs (each halving the resolution) on a
//! 112×112 crop, global average pool, and a 256 → 136 linear layer giving (x, y) per point, relative to
//! the centre-padded square crop.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;

use crate::face::tiny_face_detector::FaceBox;
use crate::tfjs::layers::{net_input, Conv, SeparableConv};
use crate::Result;

const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];
const INPUT: usize = 112;

enum First {
    Conv(Conv),
    Separable(SeparableConv),
}

struct DenseBlock {
    conv0: First,
    convs: [SeparableConv; 3],
}

impl DenseBlock {
    fn new(vb: VarBuilder, cin: usize, cout: usize, first: bool) -> Result<Self> {
        let conv0 = if first {
            First::Conv(Conv::new(vb.pp("conv0"), cin, cout, 3, 2, true)?)
        } else {
            First::Separable(SeparableConv::new(vb.pp("conv0"), cin, cout, 2)?)
        };
        let sep = |i: usize| SeparableConv::new(vb.pp(format!("conv{i}")), cout, cout, 1);
        Ok(Self {
            conv0,
            convs: [sep(1)?, sep(2)?, sep(3)?],
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out1 = match &self.conv0 {
            First::Conv(c) => c.forward(x)?,
            First::Separable(c) => c.forward(x)?,
        }
        .relu()?;
        let out2 = self.convs[0].forward(&out1)?;
        let out3 = self.convs[1].forward(&(&out1 + &out2)?.relu()?)?;
        let sum3 = ((&out1 + &out2)? + &out3)?;
        let out4 = self.convs[2].forward(&sum3.relu()?)?;
        (sum3 + out4)?.relu()
    }
}

/// The landmark network.
pub struct FaceLandmark68 {
    blocks: [DenseBlock; 4],
    fc_w: Tensor,
    fc_b: Tensor,
    device: Device,
}

impl FaceLandmark68 {
    /// From `face_landmark_68_model-weights_manifest.json` via `tfjs::var_builder`.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            blocks: [
                DenseBlock::new(vb.pp("dense0"), 3, 32, true)?,
                DenseBlock::new(vb.pp("dense1"), 32, 64, false)?,
                DenseBlock::new(vb.pp("dense2"), 64, 128, false)?,
                DenseBlock::new(vb.pp("dense3"), 128, 256, false)?,
            ],
            fc_w: vb.pp("fc").get((256, 136), "weights")?,
            fc_b: vb.pp("fc").get(136, "bias")?,
            device: vb.device().clone(),
        })
    }

    /// The 68 points, in image pixel coordinates, of the face inside `face` (a detector box; it is
    /// clipped to the image as face-api does).
    pub fn landmarks(&self, img: &RgbImage, face: &FaceBox) -> Result<Vec<[f64; 2]>> {
        let (iw, ih) = (img.width() as f32, img.height() as f32);
        let x0 = face.x.max(0.0).floor() as u32;
        let y0 = face.y.max(0.0).floor() as u32;
        let x1 = (face.x + face.width).min(iw).ceil() as u32;
        let y1 = (face.y + face.height).min(ih).ceil() as u32;
        let (w, h) = (
            (x1.saturating_sub(x0)).max(1) as usize,
            (y1.saturating_sub(y0)).max(1) as usize,
        );
        // Centre-pad the crop to a square with black, then resize to 112.
        let side = w.max(h);
        let (px, py) = ((side - w) / 2, (side - h) / 2);
        let mut x = net_input(img, (x0, y0, w, h), (px, py), INPUT, MEAN_RGB, &self.device)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        let pooled = x.mean(3)?.mean(2)?; // (1, 256)
        let out = pooled
            .matmul(&self.fc_w)?
            .broadcast_add(&self.fc_b)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        // Relative to the padded square: back to crop, then image coordinates.
        Ok((0..68)
            .map(|i| {
                let sx = out[2 * i] as f64 * side as f64 - px as f64;
                let sy = out[2 * i + 1] as f64 * side as f64 - py as f64;
                [x0 as f64 + sx, y0 as f64 + sy]
            })
            .collect())
    }
}
