//! Centred identity similarity. dlib's 128-d descriptors are not centred: any two faces score a raw
//! cosine of about 0.75–0.95, so similarity targets m below ≈ 0.75 mean nothing. Subtracting a fixed
//! mean descriptor μ (the mean over a seeded reference set of filtered DCGAN faces) moves unrelated
//! faces to ≈ 0 ± 0.17 and keeps same-person photos at ≈ 0.7–0.8 (measurements: docs/centring.md).
//!
//! μ is saved with every generator checkpoint (`identity_mean.safetensors`, key `mean`, plus its
//! provenance in `state.json`) and loaded with it, so training (C_id and s), inquiry selection, the
//! data set's manifest and report, the demo's readout, `sample`, `report-control` and the admin
//! sample grids all see the same scale. Verification (`eval`) keeps raw cosines.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::identity::encoder::IdentityEncoder;
use crate::{Error, Result};

/// File name of μ inside a checkpoint folder.
pub const FILE: &str = "identity_mean.safetensors";

/// Where a μ came from (saved in `state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanProvenance {
    /// The encoder it was computed under (`dlib-resnet`, …).
    pub encoder: String,
    /// What the reference faces were, e.g. "filtered DCGAN samples (seed 0, min_luma 0.2)".
    pub reference: String,
    /// Number of reference faces.
    pub count: usize,
}

/// The mean descriptor μ, (1, D).
#[derive(Debug, Clone)]
pub struct IdentityMean {
    pub mean: Tensor,
    pub provenance: MeanProvenance,
}

impl IdentityMean {
    /// μ of the raw descriptors `d` (N, D).
    pub fn from_descriptors(d: &Tensor, provenance: MeanProvenance) -> Result<Self> {
        Ok(Self {
            mean: d.mean_keepdim(0)?,
            provenance,
        })
    }

    /// Writes `dir/identity_mean.safetensors`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let map: HashMap<String, Tensor> = [("mean".to_string(), self.mean.clone())].into();
        candle_core::safetensors::save(&map, &path).map_err(|e| Error::Format {
            path: path.clone(),
            message: e.to_string(),
        })
    }

    /// Reads `dir/identity_mean.safetensors` (None when the checkpoint has none: an older,
    /// uncentred model).
    pub fn load(dir: &Path, provenance: MeanProvenance, device: &Device) -> Result<Option<Self>> {
        let path = dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let map = candle_core::safetensors::load(&path, device).map_err(|e| Error::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mean = map.get("mean").cloned().ok_or_else(|| Error::Format {
            path: path.clone(),
            message: "lacks the tensor `mean`".into(),
        })?;
        Ok(Some(Self { mean, provenance }))
    }
}

/// E_id with μ subtracted from every descriptor: cosines of its descriptors are centred similarities.
pub struct CentredEncoder {
    inner: Arc<dyn IdentityEncoder>,
    mean: Tensor,
}

impl CentredEncoder {
    pub fn new(inner: Arc<dyn IdentityEncoder>, mean: &IdentityMean) -> Result<Self> {
        if mean.mean.dims() != [1, inner.dim()] {
            return Err(Error::Config(format!(
                "identity mean has shape {:?}, the encoder {} gives {}-d descriptors",
                mean.mean.dims(),
                inner.name(),
                inner.dim()
            )));
        }
        Ok(Self {
            inner,
            mean: mean.mean.clone(),
        })
    }
}

impl IdentityEncoder for CentredEncoder {
    fn name(&self) -> String {
        format!("{} (centred)", self.inner.name())
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn centred(&self) -> bool {
        true
    }

    fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.inner.descriptors(images)?.broadcast_sub(&self.mean)?)
    }
}

/// The encoder a generator's similarities are measured with: centred when it has a μ.
pub fn centred(
    inner: Arc<dyn IdentityEncoder>,
    mean: Option<&IdentityMean>,
) -> Result<Arc<dyn IdentityEncoder>> {
    Ok(match mean {
        Some(m) => Arc::new(CentredEncoder::new(inner, m)?),
        None => inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::encoder::cosine_rows;

    struct Fixed;
    impl IdentityEncoder for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn dim(&self) -> usize {
            2
        }
        fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
            // The first two pixels of each image as its "descriptor".
            Ok(images.flatten_from(1)?.narrow(1, 0, 2)?)
        }
    }

    #[test]
    fn centring_subtracts_the_mean_and_round_trips_through_a_file() {
        let dev = Device::Cpu;
        // Two "faces" near (1, 1): raw cosine ≈ 0.99; centred they point in opposite directions.
        let x = Tensor::new(&[[1.1f32, 0.9], [0.9, 1.1]], &dev)
            .unwrap()
            .reshape((2, 1, 1, 2))
            .unwrap();
        let inner: Arc<dyn IdentityEncoder> = Arc::new(Fixed);
        let d = inner.descriptors(&x).unwrap();
        let raw = cosine_rows(&d.narrow(0, 0, 1).unwrap(), &d.narrow(0, 1, 1).unwrap()).unwrap();
        assert!(raw.to_vec1::<f32>().unwrap()[0] > 0.98);
        let prov = MeanProvenance {
            encoder: "fixed".into(),
            reference: "test".into(),
            count: 2,
        };
        let mu = IdentityMean::from_descriptors(&d, prov.clone()).unwrap();
        let dir = std::env::temp_dir().join(format!("cemiface-mean-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        mu.save(&dir).unwrap();
        let back = IdentityMean::load(&dir, prov, &dev).unwrap().unwrap();
        assert_eq!(back.mean.to_vec2::<f32>().unwrap(), vec![vec![1.0f32, 1.0]]);
        let enc = centred(inner, Some(&back)).unwrap();
        let c = enc.descriptors(&x).unwrap();
        let s = cosine_rows(&c.narrow(0, 0, 1).unwrap(), &c.narrow(0, 1, 1).unwrap()).unwrap();
        assert!((s.to_vec1::<f32>().unwrap()[0] + 1.0).abs() < 1e-5);
        assert!(
            IdentityMean::load(&dir.join("none"), back.provenance.clone(), &dev)
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
