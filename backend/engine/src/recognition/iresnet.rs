//! IResNet face-recognition backbones (ArcFace/CosFace/AdaFace), with the PyTorch state-dict key names
//! of the two reference code bases so their checkpoints load without a mapping table:
//!
//! - `insightface` — `deepinsight/insightface: recognition/arcface_torch/backbones/iresnet.py`
//!   (`conv1, bn1, prelu, layer{1..4}.{k}.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.{0,1}}, bn2, fc,
//!   features`), IR-18/34/50/100;
//! - `adaface` — `mk-minchul/AdaFace: net.py` and DCFace's `tface_model.py` (`input_layer.{0,1,2}`,
//!   `body.{i}.res_layer.{0..5}[.6 SE fc1/fc2]`, `body.{i}.shortcut_layer.{0,1}`, `output_layer.{0,3,4}`),
//!   IR-18/34/50/100 and IR-SE-50 (CemiFace's E_id is AdaFace IR-50; its recogniser is IR-SE-50).
//!
//! Input: (B, 3, S, S) images normalised to [−1, 1] in the channel order the checkpoint was trained on
//! (`bgr` in the config), S = 112 (7×7 after four stride-2 stages). Output: (B, embedding_dim).

use candle_core::{Module, ModuleT, Tensor};
use candle_nn::{
    batch_norm, conv2d_no_bias, linear, prelu, BatchNorm, BatchNormConfig, Conv2dConfig, Linear, PReLU,
    VarBuilder,
};
use serde::{Deserialize, Serialize};

use crate::nn::conv::Conv2d;
use crate::nn::ops::subsample2;
use crate::{Error, Result};

/// Which reference's key names and block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Insightface,
    Adaface,
}

/// Architecture of an IResNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IResNetConfig {
    pub layout: Layout,
    /// 18, 34, 50 or 100.
    pub depth: usize,
    /// Squeeze-and-excitation in every block (AdaFace layout only: IR-SE).
    #[serde(default)]
    pub se: bool,
    /// Width of the output embedding.
    #[serde(default = "default_dim")]
    pub embedding_dim: usize,
    /// The checkpoint expects BGR input (AdaFace's do); images are given RGB and swapped.
    #[serde(default)]
    pub bgr: bool,
    /// Channels of the stem and first stage (64 in every published model; stages use 1, 2, 4, 8×).
    #[serde(default = "default_width")]
    pub width: usize,
}

fn default_width() -> usize {
    64
}

fn default_dim() -> usize {
    512
}

impl IResNetConfig {
    /// insightface `r{depth}` (ArcFace/CosFace checkpoints), RGB input.
    pub fn insightface(depth: usize) -> Self {
        Self {
            layout: Layout::Insightface,
            depth,
            se: false,
            embedding_dim: 512,
            bgr: false,
            width: 64,
        }
    }

    /// AdaFace `ir_{depth}` (BGR input), the paper's E_id at depth 50.
    pub fn adaface(depth: usize) -> Self {
        Self {
            layout: Layout::Adaface,
            depth,
            se: false,
            embedding_dim: 512,
            bgr: true,
            width: 64,
        }
    }

    /// IR-SE-50 in the AdaFace/TFace layout: the recogniser CemiFace trains on synthetic data.
    pub fn ir_se_50() -> Self {
        Self {
            se: true,
            bgr: false,
            ..Self::adaface(50)
        }
    }

    /// Blocks per stage.
    pub fn units(&self) -> Result<[usize; 4]> {
        Ok(match self.depth {
            18 => [2, 2, 2, 2],
            34 => [3, 4, 6, 3],
            50 => [3, 4, 14, 3],
            100 => [3, 13, 30, 3],
            d => {
                return Err(Error::Config(format!(
                    "IResNet depth {d} is not one of 18, 34, 50, 100"
                )))
            }
        })
    }
}

const BN: BatchNormConfig = BatchNormConfig {
    eps: 1e-5,
    remove_mean: true,
    affine: true,
    momentum: 0.1,
};

fn conv(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        stride,
        ..Default::default()
    };
    Ok(conv2d_no_bias(cin, cout, k, cfg, vb)?.into())
}

/// Squeeze-and-excitation (`fc1`, `fc2` as 1×1 convolutions without bias, reduction 16).
#[derive(Debug, Clone)]
struct SqueezeExcite {
    fc1: Conv2d,
    fc2: Conv2d,
}

impl Module for SqueezeExcite {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let s = x.mean_keepdim(3)?.mean_keepdim(2)?;
        let s = candle_nn::ops::sigmoid(&self.fc2.forward(&self.fc1.forward(&s)?.relu()?)?)?;
        x.broadcast_mul(&s)
    }
}

/// One improved residual unit: BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN [→ SE], plus a
/// shortcut (identity, stride-2 subsampling, or conv1×1 + BN).
#[derive(Debug, Clone)]
struct Block {
    bn_in: BatchNorm,
    conv1: Conv2d,
    bn_mid: BatchNorm,
    prelu: PReLU,
    conv2: Conv2d,
    bn_out: BatchNorm,
    se: Option<SqueezeExcite>,
    shortcut: Option<(Conv2d, BatchNorm)>,
    stride: usize,
}

impl Block {
    fn new(cfg: &IResNetConfig, cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let projection = cin != cout || (cfg.layout == Layout::Insightface && stride != 1);
        let (names, sc) = match cfg.layout {
            Layout::Insightface => (
                ["bn1", "conv1", "bn2", "prelu", "conv2", "bn3"].map(|n| vb.pp(n)),
                vb.pp("downsample"),
            ),
            Layout::Adaface => {
                let r = vb.pp("res_layer");
                (
                    ["0", "1", "2", "3", "4", "5"].map(|n| r.pp(n)),
                    vb.pp("shortcut_layer"),
                )
            }
        };
        let [b1, c1, b2, p, c2, b3] = names;
        let se = match cfg.se {
            false => None,
            true => {
                let s = vb.pp("res_layer").pp("6");
                let one = |a, b, vb| conv(a, b, 1, 1, vb);
                Some(SqueezeExcite {
                    fc1: one(cout, cout / 16, s.pp("fc1"))?,
                    fc2: one(cout / 16, cout, s.pp("fc2"))?,
                })
            }
        };
        let shortcut = match projection {
            false => None,
            true => Some((
                conv(cin, cout, 1, stride, sc.pp("0"))?,
                batch_norm(cout, BN, sc.pp("1"))?,
            )),
        };
        Ok(Self {
            bn_in: batch_norm(cin, BN, b1)?,
            conv1: conv(cin, cout, 3, 1, c1)?,
            bn_mid: batch_norm(cout, BN, b2)?,
            prelu: prelu(Some(cout), p)?,
            conv2: conv(cout, cout, 3, stride, c2)?,
            bn_out: batch_norm(cout, BN, b3)?,
            se,
            shortcut,
            stride,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let y = self.conv1.forward(&self.bn_in.forward_t(x, train)?)?;
        let y = self.prelu.forward(&self.bn_mid.forward_t(&y, train)?)?;
        let mut y = self.bn_out.forward_t(&self.conv2.forward(&y)?, train)?;
        if let Some(se) = &self.se {
            y = se.forward(&y)?;
        }
        let short = match (&self.shortcut, self.stride) {
            (Some((c, bn)), _) => bn.forward_t(&c.forward(x)?, train)?,
            (None, 1) => x.clone(),
            (None, _) => subsample2(x)?,
        };
        y + short
    }
}

/// The backbone.
#[derive(Debug, Clone)]
pub struct IResNet {
    cfg: IResNetConfig,
    stem: (Conv2d, BatchNorm, PReLU),
    blocks: Vec<Block>,
    bn_feat: BatchNorm,
    fc: Linear,
    features: BatchNorm,
}

impl IResNet {
    /// Builds the network, reading (or, from a `VarMap`, creating) every parameter under `vb`.
    pub fn new(cfg: IResNetConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.se && cfg.layout == Layout::Insightface {
            return Err(Error::Config(
                "IR-SE is defined in the adaface layout only".into(),
            ));
        }
        let units = cfg.units()?;
        let (stem_vb, body_vb) = match cfg.layout {
            Layout::Insightface => ([vb.pp("conv1"), vb.pp("bn1"), vb.pp("prelu")], None),
            Layout::Adaface => {
                let i = vb.pp("input_layer");
                ([i.pp("0"), i.pp("1"), i.pp("2")], Some(vb.pp("body")))
            }
        };
        let [c, b, p] = stem_vb;
        let w = cfg.width;
        let stem = (conv(3, w, 3, 1, c)?, batch_norm(w, BN, b)?, prelu(Some(w), p)?);
        let widths = [w, 2 * w, 4 * w, 8 * w];
        let mut blocks = Vec::new();
        let mut cin = w;
        for (stage, (&n, &cout)) in units.iter().zip(&widths).enumerate() {
            for k in 0..n {
                let block_vb = match &body_vb {
                    Some(body) => body.pp(blocks.len()),
                    None => vb.pp(format!("layer{}", stage + 1)).pp(k),
                };
                blocks.push(Block::new(&cfg, cin, cout, if k == 0 { 2 } else { 1 }, block_vb)?);
                cin = cout;
            }
        }
        let (bn2, fc_vb, feat_vb, feat_affine) = match cfg.layout {
            Layout::Insightface => (vb.pp("bn2"), vb.pp("fc"), vb.pp("features"), true),
            Layout::Adaface => {
                let o = vb.pp("output_layer");
                (o.pp("0"), o.pp("3"), o.pp("4"), false)
            }
        };
        let feat_cfg = BatchNormConfig {
            affine: feat_affine,
            ..BN
        };
        Ok(Self {
            bn_feat: batch_norm(8 * w, BN, bn2)?,
            fc: linear(8 * w * 7 * 7, cfg.embedding_dim, fc_vb)?,
            features: batch_norm(cfg.embedding_dim, feat_cfg, feat_vb)?,
            stem,
            blocks,
            cfg,
        })
    }

    pub fn config(&self) -> &IResNetConfig {
        &self.cfg
    }

    /// Embeddings (not normalised) of RGB images in [−1, 1]; `train` switches BatchNorm to batch
    /// statistics.
    ///
    /// # Shapes
    /// `images`: (B, 3, 112, 112) → (B, embedding_dim).
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let x = if self.cfg.bgr {
            images.flip(&[1])?
        } else {
            images.clone()
        };
        let (c, bn, p) = &self.stem;
        let x = p.forward(&bn.forward_t(&c.forward(&x)?, train)?)?;
        let x = self.blocks.iter().try_fold(x, |x, b| b.forward_t(&x, train))?; // (B, 8·width, 7, 7)
        let x = self.bn_feat.forward_t(&x, train)?.flatten_from(1)?;
        Ok(self.features.forward_t(&self.fc.forward(&x)?, train)?)
    }
}
