//! Margin-based softmax heads for face-recognition training: CosFace (large margin cosine loss,
//! s·(cos θ_y − m)) and ArcFace (additive angular margin, s·cos(θ_y + m)). The class centres are
//! `weight` (classes, dim), as in insightface's heads.

use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::identity::encoder::l2_normalize;
use crate::{Error, Result};

/// Which margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum MarginConfig {
    /// CosFace (docs/paper.md §4.1: s = 64, m = 0.4).
    Cosface { s: f64, m: f64 },
    /// ArcFace (insightface: s = 64, m = 0.5).
    Arcface { s: f64, m: f64 },
}

impl MarginConfig {
    pub fn scale(&self) -> f64 {
        match self {
            Self::Cosface { s, .. } | Self::Arcface { s, .. } => *s,
        }
    }
}

/// A classification head over `classes` identities.
pub struct MarginHead {
    weight: Tensor,
    cfg: MarginConfig,
}

/// One-hot rows of `labels` (B,) u32 over `classes`, as f32 (B, classes).
pub fn one_hot(labels: &Tensor, classes: usize) -> Result<Tensor> {
    let ids = Tensor::arange(0u32, classes as u32, labels.device())?;
    Ok(labels
        .unsqueeze(1)?
        .broadcast_eq(&ids.unsqueeze(0)?)?
        .to_dtype(DType::F32)?)
}

impl MarginHead {
    pub fn new(cfg: MarginConfig, classes: usize, dim: usize, vb: VarBuilder) -> Result<Self> {
        if classes == 0 {
            return Err(Error::Config("the data set has no identities".into()));
        }
        let weight = vb.get_with_hints(
            (classes, dim),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
        )?;
        Ok(Self { weight, cfg })
    }

    pub fn classes(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    /// Cosine of every embedding (B, dim) to every class centre: (B, classes).
    pub fn cosine(&self, emb: &Tensor) -> Result<Tensor> {
        Ok(l2_normalize(emb)?.matmul(&l2_normalize(&self.weight)?.t()?)?)
    }

    /// Margin-adjusted, scaled logits for `labels` (B,) u32.
    pub fn logits(&self, emb: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let cos = self.cosine(emb)?;
        let hot = one_hot(labels, self.classes())?;
        let target = match self.cfg {
            MarginConfig::Cosface { m, .. } => (&cos - m)?,
            MarginConfig::Arcface { m, .. } => {
                // cos(θ + m) = cos·cos m − sin·sin m, and past θ = π − m (where θ + m would wrap)
                // insightface's fallback cos − m·sin m keeps the logit monotone.
                let c = cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7)?;
                let sin = (1.0 - c.sqr()?)?.sqrt()?;
                let phi = ((&c * m.cos())? - (sin * m.sin())?)?;
                let th = (std::f64::consts::PI - m).cos();
                let fallback = (&c - m * m.sin())?;
                c.gt(th)?.where_cond(&phi, &fallback)?
            }
        };
        let mixed = ((&hot * &target)? + ((1.0 - &hot)? * &cos)?)?;
        Ok((mixed * self.cfg.scale())?)
    }

    /// Cross-entropy loss and the fraction of the batch whose nearest centre is its own class.
    pub fn loss(&self, emb: &Tensor, labels: &Tensor) -> Result<(Tensor, f32)> {
        let logits = self.logits(emb, labels)?;
        let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
        let pred = self.cosine(emb)?.argmax(D::Minus1)?;
        let right = pred
            .eq(labels)?
            .to_dtype(DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()?;
        Ok((loss, right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn head(cfg: MarginConfig) -> MarginHead {
        // Two class centres along the axes.
        let w = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        MarginHead { weight: w, cfg }
    }

    #[test]
    fn cosface_and_arcface_logits_by_hand() {
        let (c, s) = (0.6f32, 0.8f32); // an embedding at angle θ with cos 0.6 to class 0
        let emb = Tensor::new(&[[c * 3.0, s * 3.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let l: Vec<f32> = head(MarginConfig::Cosface { s: 64.0, m: 0.4 })
            .logits(&emb, &labels)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            (l[0] - 64.0 * 0.2).abs() < 1e-4 && (l[1] - 64.0 * 0.8).abs() < 1e-4,
            "{l:?}"
        );
        let l: Vec<f32> = head(MarginConfig::Arcface { s: 10.0, m: 0.5 })
            .logits(&emb, &labels)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = 10.0 * (0.6f64.acos() + 0.5).cos();
        assert!(
            (l[0] as f64 - want).abs() < 1e-4 && (l[1] - 8.0).abs() < 1e-4,
            "{l:?} vs {want}"
        );
        // Past π − m the fallback applies: cos = −0.95 for class 0.
        let far = Tensor::new(&[[-0.95f32, 0.312]], &Device::Cpu).unwrap();
        let l: Vec<f32> = head(MarginConfig::Arcface { s: 1.0, m: 0.5 })
            .logits(&far, &labels)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let cos0 = -0.95 / (0.95f64 * 0.95 + 0.312 * 0.312).sqrt();
        assert!((l[0] as f64 - (cos0 - 0.5 * 0.5f64.sin())).abs() < 1e-4, "{l:?}");
        let (loss, acc) = head(MarginConfig::Cosface { s: 64.0, m: 0.4 })
            .loss(&emb, &labels)
            .unwrap();
        // Nearest centre is class 1: wrong, and the loss is about 64·(0.8 − 0.2).
        assert!((loss.to_scalar::<f32>().unwrap() - 38.4).abs() < 0.01 && acc == 0.0);
    }
}
