//! Generation with a trained CemiFace model: DDIM over the (EMA) UNet, conditioned on an inquiry
//! identity and a similarity target m per image, each image with its own noise seed.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::ddim::{Ddim, StepInfo};
use crate::noise::NoiseRng;
use crate::schedule::NoiseSchedule;
use crate::train::TrainConfig;
use crate::unet::UNet;
use crate::{Error, Result};

/// A loaded generator.
pub struct Generator {
    pub unet: UNet,
    pub schedule: NoiseSchedule,
    pub config: TrainConfig,
    /// Training steps of the loaded checkpoint.
    pub step: u64,
    /// The checkpoint folder it was loaded from.
    pub dir: PathBuf,
    device: Device,
}

impl Generator {
    /// Loads a checkpoint folder (`…/checkpoints/step_N`, or a run folder: its newest checkpoint),
    /// with the EMA weights unless `raw` is set.
    pub fn load(path: &Path, raw: bool, device: &Device) -> Result<Self> {
        let dir = resolve(path)?;
        let state = dir.join("state.json");
        let text = std::fs::read_to_string(&state).map_err(|e| Error::io(&state, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: state.clone(),
            message: e.to_string(),
        })?;
        let config: TrainConfig = serde_json::from_value(v["config"].clone()).map_err(|e| Error::Format {
            path: state.clone(),
            message: format!("config: {e}"),
        })?;
        let weights = dir.join(if raw {
            "model.safetensors"
        } else {
            "ema.safetensors"
        });
        let tensors = candle_core::safetensors::load(&weights, device).map_err(|e| Error::Format {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let unet = UNet::new(
            config.model.clone(),
            VarBuilder::from_tensors(tensors, DType::F32, device),
        )?;
        Ok(Self {
            unet,
            schedule: NoiseSchedule::new(&config.schedule)?,
            config,
            step: v["step"].as_u64().unwrap_or(0),
            dir,
            device: device.clone(),
        })
    }

    /// A generator with freshly initialised (untrained) weights: for benchmarks, whose timings do
    /// not depend on the weights' values.
    pub fn untrained(config: TrainConfig, device: &Device) -> Result<Self> {
        let vm = candle_nn::VarMap::new();
        UNet::new(
            config.model.clone(),
            VarBuilder::from_varmap(&vm, DType::F32, device),
        )?;
        // Plain tensors, not variables: sampling must not record an autograd graph across steps.
        let weights = vm
            .data()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let unet = UNet::new(
            config.model.clone(),
            VarBuilder::from_tensors(weights, DType::F32, device),
        )?;
        Ok(Self {
            unet,
            schedule: NoiseSchedule::new(&config.schedule)?,
            config,
            step: 0,
            dir: PathBuf::from("(untrained)"),
            device: device.clone(),
        })
    }

    /// Image side the model works at.
    pub fn image_size(&self) -> usize {
        self.config.model.image_size
    }

    /// Samples one image per (m, seed) for the identity `c_id` (1, D), L2-normalised. Returns
    /// (B, 3, S, S) in [−1, 1]. The callback sees every DDIM step (x̂0 for previews) and may stop early.
    pub fn sample(
        &self,
        c_id: &Tensor,
        m: &[f32],
        seeds: &[u64],
        steps: usize,
        eta: f64,
        callback: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Tensor> {
        if m.len() != seeds.len() || m.is_empty() {
            return Err(Error::Config("one m and one seed per image".into()));
        }
        if let Some(bad) = m.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
            return Err(Error::Config(format!("m = {bad} is outside [-1, 1]")));
        }
        let b = m.len();
        let ddim = Ddim::new(self.schedule.clone(), steps, eta)?;
        let c = c_id.broadcast_as((b, c_id.dim(1)?))?.contiguous()?;
        let m_t = Tensor::new(m, &self.device)?;
        let mut rngs: Vec<NoiseRng> = seeds.iter().map(|&s| NoiseRng::new(s)).collect();
        let s = self.image_size();
        ddim.sample(
            (3, s, s),
            &mut rngs,
            &self.device,
            |x, t| {
                let t = Tensor::new(vec![t as u32; b].as_slice(), &self.device)?;
                self.unet.forward(x, &t, &c, &m_t)
            },
            callback,
        )
    }
}

fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").exists() {
        return Ok(path.to_path_buf());
    }
    crate::train::Trainer::latest_checkpoint(path).ok_or_else(|| {
        Error::Config(format!(
            "{}: not a checkpoint folder (no state.json) nor a run with checkpoints",
            path.display()
        ))
    })
}
