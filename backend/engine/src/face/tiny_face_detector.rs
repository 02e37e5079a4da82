//! face-api's tiny face detector (`tinyFaceDetector/`, a Tiny-YOLOv2 with depthwise-separable convs):
//! a 3×3 conv and five separable convs with 2×2 max-pools, a 1×1 head of 5 anchors × (x, y, w, h,
//! score) on a 13×13 grid at the default 416 input; boxes decoded as YOLOv2 does, then NMS at IoU 0.4.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;

use crate::tfjs::layers::{max_pool_same, net_input, Conv, SeparableConv};
use crate::Result;

const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
const ANCHORS: [(f32, f32); 5] = [
    (1.603231, 2.094468),
    (6.041143, 7.080126),
    (2.882459, 3.518061),
    (4.266906, 5.178857),
    (9.041765, 10.66308),
];
const IOU_THRESHOLD: f32 = 0.4;

/// A detected face in image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

impl FaceBox {
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    fn iou(&self, o: &FaceBox) -> f32 {
        let ix = (self.x + self.width).min(o.x + o.width) - self.x.max(o.x);
        let iy = (self.y + self.height).min(o.y + o.height) - self.y.max(o.y);
        let inter = ix.max(0.0) * iy.max(0.0);
        inter / (self.area() + o.area() - inter)
    }
}

/// The detector network.
#[derive(Debug, Clone)]
pub struct TinyFaceDetector {
    conv0: Conv,
    convs: Vec<SeparableConv>,
    head: Conv,
    device: Device,
}

impl TinyFaceDetector {
    /// From `tiny_face_detector_model-weights_manifest.json` via `tfjs::var_builder`.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let widths = [16, 32, 64, 128, 256, 512];
        let convs = (1..6)
            .map(|i| SeparableConv::new(vb.pp(format!("conv{i}")), widths[i - 1], widths[i], 1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            conv0: Conv::new(vb.pp("conv0"), 3, 16, 3, 1, false)?,
            convs,
            head: Conv::new(vb.pp("conv8"), 512, 25, 1, 1, false)?,
            device: vb.device().clone(),
        })
    }

    fn leaky(x: &Tensor) -> candle_core::Result<Tensor> {
        x.maximum(&(x * 0.1)?)
    }

    /// Raw head output for a normalised (1, 3, S, S) input: (1, 25, S/32, S/32).
    fn run(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = Self::leaky(&self.conv0.forward(x)?)?;
        for (i, c) in self.convs.iter().enumerate() {
            x = max_pool_same(&x, 2, 2)?;
            x = Self::leaky(&c.forward(&x)?)?;
            if i == 4 {
                x = max_pool_same(&x, 2, 1)?;
            }
        }
        Ok(self.head.forward(&x)?)
    }

    /// Faces in `img` scoring above `min_score`, best first. `input_size` (multiple of 32; 416 by
    /// default in face-api) trades speed for small-face recall.
    pub fn detect(&self, img: &RgbImage, input_size: usize, min_score: f32) -> Result<Vec<FaceBox>> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let side = w.max(h);
        // Pad to a square at the bottom/right with black, resize, subtract the mean, divide by 255.
        let x = net_input(img, (0, 0, w, h), (0, 0), input_size, MEAN_RGB, &self.device)?;
        let out = self.run(&x)?.squeeze(0)?; // (25, n, n)
        let n = out.dim(1)?;
        let v = out.to_vec3::<f32>()?;
        let sig = |z: f32| 1.0 / (1.0 + (-z).exp());
        let cell = side as f32 / n as f32;
        let mut boxes = Vec::new();
        // Grid cells by (row, col): the box centre is computed from both indices.
        #[allow(clippy::needless_range_loop)]
        for row in 0..n {
            for col in 0..n {
                for (a, (aw, ah)) in ANCHORS.iter().enumerate() {
                    let ch = |k: usize| v[a * 5 + k][row][col];
                    let score = sig(ch(4));
                    if score <= min_score {
                        continue;
                    }
                    let cx = (col as f32 + sig(ch(0))) * cell;
                    let cy = (row as f32 + sig(ch(1))) * cell;
                    let bw = ch(2).exp() * aw * cell;
                    let bh = ch(3).exp() * ah * cell;
                    boxes.push(FaceBox {
                        x: cx - bw / 2.0,
                        y: cy - bh / 2.0,
                        width: bw,
                        height: bh,
                        score,
                    });
                }
            }
        }
        Ok(non_max_suppression(boxes, IOU_THRESHOLD))
    }
}

/// Keeps the best-scoring boxes, dropping any that overlap a kept one by more than `iou`.
pub fn non_max_suppression(mut boxes: Vec<FaceBox>, iou: f32) -> Vec<FaceBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<FaceBox> = Vec::new();
    for b in boxes {
        if kept.iter().all(|k| k.iou(&b) <= iou) {
            kept.push(b);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let b = |x: f32, score: f32| FaceBox {
            x,
            y: 0.0,
            width: 10.0,
            height: 10.0,
            score,
        };
        let kept = non_max_suppression(vec![b(0.0, 0.6), b(1.0, 0.9), b(50.0, 0.7)], 0.4);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].x, 50.0);
    }
}
