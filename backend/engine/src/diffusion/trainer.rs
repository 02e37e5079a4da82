//! Training the CemiFace generator (Algorithm 1, docs/paper.md §3.1): for a batch of unlabelled faces x0,
//! C_id = E_id(x0) (frozen), per-sample t ~ U{0…T−1} and m from the grid, ε ~ N(0, I),
//! L = MSE(ε̂, ε) + λ·SimMat(cos(E_id(x0), E_id(x̂0)), m, t/T); AdamW with clipping, EMA weights,
//! checkpoints that resume exactly, and metrics as JSON lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::sources::FaceSource;
use crate::diffusion::schedule::{NoiseSchedule, ScheduleConfig};
use crate::diffusion::sim_mat::{m_grid, sim_mat, SimMatForm};
use crate::diffusion::unet::{UNet, UNetConfig};
use crate::identity::centring::{IdentityMean, MeanProvenance};
use crate::identity::encoder::{cosine_rows, l2_normalize, IdentityEncoder};
use crate::noise::NoiseRng;
use crate::optim::adamw::AdamWConfig;
use crate::optim::trainable::Trainable;
use crate::run_dir::{read_state, save_checkpoint_dir, write_state, StepMetrics};
use crate::{Error, Result};

/// Training knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    pub batch_size: usize,
    pub steps: u64,
    /// λ of L_SimMat (paper: 0.05).
    #[serde(default = "lambda")]
    pub lambda: f64,
    /// Spacing of the m grid over [−1, 1] (paper: 0.04).
    #[serde(default = "m_step")]
    pub m_step: f64,
    #[serde(default)]
    pub sim_mat_form: SimMatForm,
    #[serde(default = "ema_max")]
    pub ema_max_decay: f64,
    pub checkpoint_every: u64,
    #[serde(default)]
    pub seed: u64,
    /// Reference faces drawn from the data source (seeded, apart from the training stream) whose
    /// mean descriptor μ centres E_id for C_id and SimMat's s, saved with every checkpoint
    /// (`identity_mean.safetensors`); 0 keeps raw cosines (runs made before centring).
    #[serde(default)]
    pub centre_reference: usize,
}

fn lambda() -> f64 {
    0.05
}
fn m_step() -> f64 {
    0.04
}
fn ema_max() -> f64 {
    0.9999
}

/// Where training faces come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum DataConfig {
    /// The gan-face-generate DCGAN (`weights` defaults to the assets folder's copy).
    Dcgan {
        #[serde(default)]
        weights: Option<PathBuf>,
        #[serde(default = "min_luma")]
        min_luma: f32,
        #[serde(default = "min_flip_cos")]
        min_flip_cos: f32,
    },
    /// A folder of aligned face images (any depth).
    Folder { path: PathBuf },
    /// An insightface RecordIO set: `path` is the `.rec`, its `.idx` lies beside it.
    Recordio { path: PathBuf },
}

fn min_luma() -> f32 {
    0.2
}
fn min_flip_cos() -> f32 {
    0.95
}

/// The identity network E_id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum EncoderConfig {
    /// dlib's ResNet from the assets folder (128-d).
    Dlib,
    /// An IResNet checkpoint.
    Iresnet {
        checkpoint: PathBuf,
        arch: crate::recognition::iresnet::IResNetConfig,
    },
}

/// A whole run: what `cemiface train-diffusion --config` reads and saves beside the checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: UNetConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    pub optimizer: AdamWConfig,
    pub train: TrainSettings,
    pub data: DataConfig,
    pub encoder: EncoderConfig,
}

impl TrainConfig {
    /// Short name of the configured E_id.
    pub fn encoder_name(&self) -> String {
        match &self.encoder {
            EncoderConfig::Dlib => "dlib-resnet".into(),
            EncoderConfig::Iresnet { arch, .. } => {
                format!("iresnet-{}{}", if arch.se { "se-" } else { "" }, arch.depth)
            }
        }
    }
}

/// Bookkeeping saved in each checkpoint's `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    step: u64,
    rng_state: u64,
    rng_spare: Option<u64>,
    config: TrainConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity_mean: Option<MeanProvenance>,
}

/// The trainer.
pub struct Trainer {
    pub cfg: TrainConfig,
    unet: UNet,
    /// The network's variables, AdamW and EMA.
    weights: Trainable,
    schedule: NoiseSchedule,
    encoder: Arc<dyn IdentityEncoder>,
    source: Box<dyn FaceSource>,
    mean: Option<IdentityMean>,
    rng: NoiseRng,
    grid: Vec<f32>,
    device: Device,
    step: u64,
}

/// Seed offset of the reference draw, so it never repeats the training stream's first faces.
const REFERENCE_SEED: u64 = 0x5EED_0F00;

/// μ of `count` faces drawn from `source` with a seeded RNG of their own (64 at a time).
fn reference_mean(
    encoder: &dyn IdentityEncoder,
    source: &mut dyn FaceSource,
    count: usize,
    seed: u64,
) -> Result<IdentityMean> {
    let mut rng = NoiseRng::new(seed ^ REFERENCE_SEED);
    let mut parts = Vec::new();
    let mut left = count;
    while left > 0 {
        let n = left.min(64);
        let faces = source.next_batch(n, &mut rng)?;
        parts.push(encoder.descriptors(&faces)?.detach());
        left -= n;
    }
    IdentityMean::from_descriptors(
        &Tensor::cat(&parts, 0)?,
        MeanProvenance {
            encoder: encoder.name(),
            reference: format!(
                "{} (seed {seed}, drawn apart from the training stream)",
                source.describe()
            ),
            count,
        },
    )
}

impl Trainer {
    pub fn new(
        cfg: TrainConfig,
        encoder: Arc<dyn IdentityEncoder>,
        source: Box<dyn FaceSource>,
        device: &Device,
    ) -> Result<Self> {
        if cfg.model.condition.id_dim != encoder.dim() {
            return Err(Error::Config(format!(
                "model.condition.id_dim is {} but the encoder {} gives {}-d embeddings",
                cfg.model.condition.id_dim,
                encoder.name(),
                encoder.dim()
            )));
        }
        if cfg.train.batch_size == 0 || cfg.train.checkpoint_every == 0 {
            return Err(Error::Config(
                "train.batch_size and train.checkpoint_every must be positive".into(),
            ));
        }
        let (unet, weights) = Trainable::new(
            |vb| UNet::new(cfg.model.clone(), vb),
            device,
            cfg.train.seed,
            cfg.optimizer.clone(),
            cfg.train.ema_max_decay,
        )?;
        let mut source = source;
        let mean = match cfg.train.centre_reference {
            0 => None,
            n => Some(reference_mean(
                encoder.as_ref(),
                source.as_mut(),
                n,
                cfg.train.seed,
            )?),
        };
        let encoder = crate::identity::centring::centred(encoder, mean.as_ref())?;
        Ok(Self {
            schedule: NoiseSchedule::new(&cfg.schedule)?,
            grid: m_grid(cfg.train.m_step),
            mean,
            rng: NoiseRng::new(cfg.train.seed),
            cfg,
            unet,
            weights,
            encoder,
            source,
            device: device.clone(),
            step: 0,
        })
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn parameter_count(&self) -> usize {
        self.weights.parameter_count()
    }

    /// Starts the UNet from a guided-diffusion checkpoint (see [`crate::diffusion::unet::init`]);
    /// only before the first step. The EMA restarts from the loaded weights.
    pub fn init_from_checkpoint(
        &mut self,
        path: &std::path::Path,
    ) -> Result<crate::diffusion::unet::init::InitReport> {
        if self.step > 0 {
            return Err(Error::Config(format!(
                "--init applies to a new run; this one is at step {}",
                self.step
            )));
        }
        let report = crate::diffusion::unet::init::load_guided_diffusion(path, &self.weights.vars)?;
        self.weights.ema = crate::optim::ema::Ema::new(&self.weights.vars, self.cfg.train.ema_max_decay)?;
        Ok(report)
    }

    /// μ of the reference faces (None when `train.centre_reference` is 0).
    pub fn identity_mean(&self) -> Option<&IdentityMean> {
        self.mean.as_ref()
    }

    /// One optimisation step.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let b = self.cfg.train.batch_size;
        let x0 = self.source.next_batch(b, &mut self.rng)?;
        let c_id = l2_normalize(&self.encoder.descriptors(&x0)?)?.detach();
        let t: Vec<u32> = (0..b)
            .map(|_| self.rng.next_u32() % self.schedule.len() as u32)
            .collect();
        let m: Vec<f32> = (0..b)
            .map(|_| self.grid[self.rng.next_u32() as usize % self.grid.len()])
            .collect();
        let noise = self.rng.randn(x0.dims(), &self.device)?;
        let x_t = self.schedule.q_sample(&x0, &t, &noise)?;
        let t_tensor = Tensor::new(t.as_slice(), &self.device)?;
        let m_tensor = Tensor::new(m.as_slice(), &self.device)?;
        let eps = self.unet.forward(&x_t, &t_tensor, &c_id, &m_tensor)?;
        let mse = (&eps - &noise)?.sqr()?.mean_all()?;
        let x0_hat = self.schedule.predict_x0(&x_t, &t, &eps, true)?;
        let s = cosine_rows(&c_id, &self.encoder.descriptors(&x0_hat)?)?;
        let gamma = self.schedule.fraction(&t, &self.device)?;
        let sm = sim_mat(&s, &m_tensor, &gamma, self.cfg.train.sim_mat_form)?;
        let loss = (&mse + (&sm.loss * self.cfg.train.lambda)?)?;
        let grads = loss.backward()?;
        let grad_norm = self.weights.step(&grads, self.step)?;
        self.step += 1;
        let scalar = |t: &Tensor| -> Result<f32> { Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?) };
        Ok(StepMetrics {
            step: self.step,
            loss: scalar(&loss)?,
            mse: scalar(&mse)?,
            sim_mat: scalar(&sm.loss)?,
            rec: scalar(&sm.rec)?,
            sim: scalar(&sm.sim)?,
            grad_norm,
            lr: self.weights.opt.learning_rate(),
            images_per_s: b as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Writes `run_dir/checkpoints/step_NNNNNNNN/{model,ema,optimizer}.safetensors` and `state.json`
    /// (step, RNG state, resolved config), atomically (a temp folder renamed into place).
    pub fn save(&self, run_dir: &Path) -> Result<PathBuf> {
        save_checkpoint_dir(run_dir, self.step, |tmp| {
            self.weights.save(tmp)?;
            if let Some(mean) = &self.mean {
                mean.save(tmp)?;
            }
            let (rng_state, rng_spare) = self.rng.state();
            let state = TrainState {
                step: self.step,
                rng_state,
                rng_spare,
                config: self.cfg.clone(),
                identity_mean: self.mean.as_ref().map(|m| m.provenance.clone()),
            };
            write_state(tmp, &state)
        })
    }

    /// Restores model, EMA, optimizer, step and RNG from a checkpoint folder.
    pub fn load(&mut self, ckpt: &Path) -> Result<()> {
        let state: TrainState = read_state(ckpt)?;
        if state.config.model != self.cfg.model {
            return Err(Error::Config(format!(
                "{} was trained with a different model config",
                ckpt.display()
            )));
        }
        self.weights.load(ckpt, &self.device)?;
        self.step = state.step;
        self.rng = NoiseRng::from_state(state.rng_state, state.rng_spare);
        Ok(())
    }
}

/// The identity network a config names (dlib from `assets_dir`, or an IResNet checkpoint).
pub fn build_encoder(
    cfg: &EncoderConfig,
    assets_dir: &Path,
    device: &Device,
) -> Result<Arc<dyn IdentityEncoder>> {
    Ok(match cfg {
        EncoderConfig::Dlib => Arc::new(crate::identity::encoder::DlibEncoder::load(assets_dir, device)?),
        EncoderConfig::Iresnet { checkpoint, arch } => {
            let vb = crate::checkpoint::var_builder(checkpoint, None, device)?;
            Arc::new(crate::identity::encoder::IResNetEncoder::new(
                crate::recognition::iresnet::IResNet::new(arch.clone(), vb)?,
                device,
            ))
        }
    })
}

/// The training-face source a config names.
pub fn build_source(
    cfg: &TrainConfig,
    encoder: Arc<dyn IdentityEncoder>,
    assets_dir: &Path,
    device: &Device,
) -> Result<Box<dyn FaceSource>> {
    let size = cfg.model.image_size;
    Ok(match &cfg.data {
        DataConfig::Dcgan {
            weights,
            min_luma,
            min_flip_cos,
        } => {
            let path = weights
                .clone()
                .unwrap_or_else(|| assets_dir.join("gan-face-generate/weights.tar"));
            let gan = crate::data::dcgan::Dcgan::load(&path, device)?;
            Box::new(crate::data::sources::DcganSource::new(
                gan,
                size,
                *min_luma,
                *min_flip_cos,
                Some(encoder),
            ))
        }
        DataConfig::Folder { path } => {
            Box::new(crate::data::sources::ImageFolderSource::new(path, size, device)?)
        }
        DataConfig::Recordio { path } => {
            Box::new(crate::data::sources::RecordioSource::new(path, size, device)?)
        }
    })
}
