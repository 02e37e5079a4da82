//! dlib's 128-d face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`, LFW 99.38 %), built
//! from the tfjs port in `@vladmandic/face-api` (`FaceRecognitionNet.ts`, `residualLayer.ts`,
//! `convLayer.ts`). Differentiable end to end: CemiFace back-propagates its similarity loss through it.
//!
//! Input: a batch of 150×150 RGB "face chips" in [0, 255], NCHW. Output: the 128-d descriptor, not
//! normalised (norm ≈ 1.45); dlib compares descriptors by Euclidean distance with 0.6 as threshold.

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

use crate::nn::max_pool::max_pool_s2;
use crate::nn::relu::{add_relu, relu};
use crate::tfjs::hwio_to_oihw;
use crate::Result;

/// dlib's chip size.
pub const CHIP_SIZE: usize = 150;
/// Per-channel RGB mean subtracted before dividing by 256.
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// conv → + bias → · scale + shift (dlib's affine layer, folded batch norm) → optional ReLU.
#[derive(Debug, Clone)]
struct ConvLayer {
    filters: Tensor,
    bias: Tensor,
    scale: Tensor,
    shift: Tensor,
    stride: usize,
    padding: usize,
    relu: bool,
    /// The affine folded into the convolution, (W·scale, bias·scale + shift), computed once when
    /// the weights are frozen (loaded, as E_id always is). Trainable weights fold at every forward:
    /// per forward the fold reads and writes all 5.6 M weights, which at batch 1 cost as much as
    /// the convolutions it saves.
    folded: Option<(Tensor, Tensor)>,
}

impl ConvLayer {
    /// `vb` points at e.g. `conv32_1.conv1`; `k`: kernel size; `valid`: TF 'VALID' padding, else 'SAME'.
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        valid: bool,
        relu: bool,
    ) -> Result<Self> {
        let filters = hwio_to_oihw(&vb.pp("conv").get((k, k, cin, cout), "filters")?)?;
        let col = |t: Tensor| t.reshape((1, cout, 1, 1));
        let mut layer = Self {
            filters,
            bias: col(vb.pp("conv").get(cout, "bias")?)?,
            scale: col(vb.pp("scale").get(cout, "weights")?)?,
            shift: col(vb.pp("scale").get(cout, "biases")?)?,
            stride,
            // TF 'SAME' with stride 1 and an odd kernel pads (k − 1) / 2 on every side.
            padding: if valid { 0 } else { (k - 1) / 2 },
            relu,
            folded: None,
        };
        let frozen = [&layer.filters, &layer.bias, &layer.scale, &layer.shift]
            .iter()
            .all(|t| !t.track_op());
        if frozen {
            layer.folded = Some(layer.fold()?);
        }
        Ok(layer)
    }

    /// (conv(x, W) + bias)·scale + shift = conv(x, W·scale) + (bias·scale + shift): the affine
    /// folds into the convolution (weights are tiny next to activations at the batch sizes of
    /// training).
    fn fold(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let cout = self.filters.dim(0)?;
        let w = self
            .filters
            .broadcast_mul(&self.scale.reshape((cout, 1, 1, 1))?)?
            .contiguous()?;
        let b = ((&self.bias * &self.scale)? + &self.shift)?.flatten_all()?;
        Ok((w, b))
    }
}

impl Module for ConvLayer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (w, b) = match &self.folded {
            Some((w, b)) => (w.clone(), b.clone()),
            None => self.fold()?,
        };
        let y = crate::nn::conv::conv2d_bias(x, &w, Some(&b), self.stride, self.padding)?;
        if self.relu {
            relu(&y)
        } else {
            Ok(y)
        }
    }
}

/// A residual block; `down` halves the resolution (3×3 stride-2 'VALID' conv, 2×2 average-pool
/// shortcut zero-padded in channels when the width doubles).
#[derive(Debug, Clone)]
struct Residual {
    conv1: ConvLayer,
    conv2: ConvLayer,
    down: bool,
}

impl Residual {
    fn new(vb: VarBuilder, cin: usize, cout: usize, down: bool) -> Result<Self> {
        let stride = if down { 2 } else { 1 };
        Ok(Self {
            conv1: ConvLayer::new(vb.pp("conv1"), cin, cout, 3, stride, down, true)?,
            conv2: ConvLayer::new(vb.pp("conv2"), cout, cout, 3, 1, false, false)?,
            down,
        })
    }
}

impl Module for Residual {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = self.conv2.forward(&self.conv1.forward(x)?)?;
        if !self.down {
            return add_relu(&out, x);
        }
        let mut pooled = x.avg_pool2d(2)?;
        let (_, c, h, w) = out.dims4()?;
        let (_, pc, ph, pw) = pooled.dims4()?;
        if (ph, pw) != (h, w) {
            // face-api pads the main path with a zero row at the bottom and a zero column at the right.
            out = out.pad_with_zeros(2, 0, ph - h)?.pad_with_zeros(3, 0, pw - w)?;
        }
        if pc != c {
            pooled = pooled.pad_with_zeros(1, 0, c - pc)?;
        }
        add_relu(&pooled, &out)
    }
}

/// The network.
#[derive(Debug, Clone)]
pub struct DlibResNet {
    stem: ConvLayer,
    blocks: Vec<Residual>,
    fc: Tensor,
    mean: Tensor,
}

impl DlibResNet {
    /// Builds the net from face-api's weights (`tfjs::var_builder` over
    /// `face_recognition_model-weights_manifest.json`).
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let stem = ConvLayer::new(vb.pp("conv32_down"), 3, 32, 7, 2, true, true)?;
        // (name, in, out, down)
        let plan: [(&str, usize, usize, bool); 14] = [
            ("conv32_1", 32, 32, false),
            ("conv32_2", 32, 32, false),
            ("conv32_3", 32, 32, false),
            ("conv64_down", 32, 64, true),
            ("conv64_1", 64, 64, false),
            ("conv64_2", 64, 64, false),
            ("conv64_3", 64, 64, false),
            ("conv128_down", 64, 128, true),
            ("conv128_1", 128, 128, false),
            ("conv128_2", 128, 128, false),
            ("conv256_down", 128, 256, true),
            ("conv256_1", 256, 256, false),
            ("conv256_2", 256, 256, false),
            ("conv256_down_out", 256, 256, true),
        ];
        let blocks = plan
            .iter()
            .map(|&(name, cin, cout, down)| Residual::new(vb.pp(name), cin, cout, down))
            .collect::<Result<Vec<_>>>()?;
        let fc = vb.get((256, 128), "fc")?;
        let mean = Tensor::new(&MEAN_RGB, vb.device())?.reshape((1, 3, 1, 1))?;
        Ok(Self {
            stem,
            blocks,
            fc,
            mean,
        })
    }

    /// Descriptors of a batch of chips.
    ///
    /// # Shapes
    /// `chips`: (B, 3, 150, 150), RGB in [0, 255] → (B, 128).
    pub fn forward(&self, chips: &Tensor) -> Result<Tensor> {
        let x = (chips.broadcast_sub(&self.mean)? / 256.0)?;
        let x = max_pool_s2(&self.stem.forward(&x)?, 3)?; // (B, 32, 35, 35)
        let x = self.blocks.iter().try_fold(x, |x, b| b.forward(&x))?; // (B, 256, 2, 2)
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?; // (B, 256)
        Ok(pooled.matmul(&self.fc)?)
    }
}
