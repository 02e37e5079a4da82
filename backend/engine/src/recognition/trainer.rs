//! Face-recognition training on a (synthetic) labelled set, the CemiFace recipe of docs/paper.md §4.1:
//! IResNet backbone + CosFace (or ArcFace) head, SGD with momentum and step decay, the recipe's
//! augmentations. Every batch is a pure function of (seed, step): the epoch's permutation comes from
//! (seed, epoch) and each image's augmentation from (seed, step, slot), so a checkpoint only needs
//! the weights, BatchNorm statistics, momentum buffers and the step to resume exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::data::labelled::LabelledSet;
use crate::noise::NoiseRng;
use crate::optim::sgd::{Sgd, SgdConfig};
use crate::recognition::augment::{augment, AugmentConfig};
use crate::recognition::iresnet::{IResNet, IResNetConfig};
use crate::recognition::margin::{MarginConfig, MarginHead};
use crate::{Error, Result};

/// Run length and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrSettings {
    pub epochs: usize,
    pub batch_size: usize,
    pub checkpoint_every: u64,
    #[serde(default)]
    pub seed: u64,
}

/// A whole FR run (`cemiface train-fr --config`), saved beside its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrConfig {
    pub backbone: IResNetConfig,
    pub head: MarginConfig,
    pub optimizer: SgdConfig,
    pub train: FrSettings,
    pub augment: AugmentConfig,
    /// Training data: a folder of identity folders or a `.rec` (`--data` sets it).
    #[serde(default)]
    pub data: Option<PathBuf>,
}

/// What one step reports (a line of metrics.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrStepMetrics {
    pub step: u64,
    pub epoch: usize,
    pub loss: f32,
    /// Fraction of the batch whose nearest class centre is its own identity.
    pub accuracy: f32,
    pub lr: f64,
    pub images_per_s: f64,
}

#[derive(Serialize, Deserialize)]
struct FrState {
    step: u64,
    classes: usize,
    config: FrConfig,
}

/// Input side of every IResNet.
pub const FR_SIZE: u32 = 112;

/// The trainer.
pub struct FrTrainer {
    pub cfg: FrConfig,
    backbone: IResNet,
    head: MarginHead,
    backbone_vars: VarMap,
    head_vars: VarMap,
    opt: Sgd,
    data: Box<dyn LabelledSet>,
    device: Device,
    step: u64,
    perm: (usize, Vec<usize>),
}

fn sorted_vars(vm: &VarMap, prefix: &str) -> Vec<(String, Var)> {
    let mut v: Vec<(String, Var)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl FrTrainer {
    pub fn new(cfg: FrConfig, data: Box<dyn LabelledSet>, device: &Device) -> Result<Self> {
        if cfg.train.batch_size == 0 || cfg.train.checkpoint_every == 0 || cfg.train.epochs == 0 {
            return Err(Error::Config(
                "train.epochs, batch_size and checkpoint_every must be positive".into(),
            ));
        }
        if data.len() < cfg.train.batch_size {
            return Err(Error::Config(format!(
                "the data set has {} images, fewer than one batch of {}",
                data.len(),
                cfg.train.batch_size
            )));
        }
        let backbone_vars = VarMap::new();
        let backbone = IResNet::new(
            cfg.backbone.clone(),
            VarBuilder::from_varmap(&backbone_vars, DType::F32, device),
        )?;
        let head_vars = VarMap::new();
        let head = MarginHead::new(
            cfg.head.clone(),
            data.classes(),
            cfg.backbone.embedding_dim,
            VarBuilder::from_varmap(&head_vars, DType::F32, device),
        )?;
        let mut vars = sorted_vars(&backbone_vars, "backbone.");
        vars.extend(sorted_vars(&head_vars, "head."));
        crate::run_dir::seeded_init(&vars, cfg.train.seed)?;
        let opt = Sgd::new(vars, cfg.optimizer.clone());
        Ok(Self {
            cfg,
            backbone,
            head,
            backbone_vars,
            head_vars,
            opt,
            data,
            device: device.clone(),
            step: 0,
            perm: (usize::MAX, Vec::new()),
        })
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn steps_per_epoch(&self) -> u64 {
        (self.data.len() / self.cfg.train.batch_size) as u64
    }

    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch() * self.cfg.train.epochs as u64
    }

    pub fn describe_data(&self) -> String {
        self.data.describe()
    }

    pub fn backbone(&self) -> &IResNet {
        &self.backbone
    }

    /// The permutation of epoch `e` (Fisher–Yates from (seed, e)).
    fn permutation(&mut self, epoch: usize) -> &[usize] {
        if self.perm.0 != epoch {
            let mut rng = NoiseRng::new(NoiseRng::derive(&[self.cfg.train.seed, 0xE90C, epoch as u64]));
            let mut p: Vec<usize> = (0..self.data.len()).collect();
            for i in (1..p.len()).rev() {
                let j = ((rng.next_u32() as u64 * (i as u64 + 1)) >> 32) as usize;
                p.swap(i, j);
            }
            self.perm = (epoch, p);
        }
        &self.perm.1
    }

    /// One SGD step.
    pub fn train_step(&mut self) -> Result<FrStepMetrics> {
        let started = Instant::now();
        let b = self.cfg.train.batch_size;
        let spe = self.steps_per_epoch();
        let epoch = (self.step / spe) as usize;
        let k = (self.step % spe) as usize;
        let idx: Vec<usize> = self.permutation(epoch)[k * b..(k + 1) * b].to_vec();
        let mut pixels = Vec::with_capacity(b * 3 * (FR_SIZE * FR_SIZE) as usize);
        let mut labels = Vec::with_capacity(b);
        for (slot, &i) in idx.iter().enumerate() {
            let img = self.data.image(i)?;
            let mut rng = NoiseRng::new(NoiseRng::derive(&[self.cfg.train.seed, self.step, slot as u64]));
            pixels.extend(augment(&img, FR_SIZE, &self.cfg.augment, &mut rng));
            labels.push(self.data.label(i));
        }
        let s = FR_SIZE as usize;
        let x = Tensor::from_vec(pixels, (b, 3, s, s), &self.device)?;
        let y = Tensor::new(labels.as_slice(), &self.device)?;
        let emb = self.backbone.forward_t(&x, true)?;
        let (loss, accuracy) = self.head.loss(&emb, &y)?;
        let lr = self.cfg.optimizer.lr_at(epoch, self.step);
        self.opt.step(&loss.backward()?, lr)?;
        self.step += 1;
        let loss = loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(Error::Config(format!(
                "the loss diverged (NaN/inf) at step {}: lower optimizer.lr or add warm-up steps",
                self.step
            )));
        }
        Ok(FrStepMetrics {
            step: self.step,
            epoch,
            loss,
            accuracy,
            lr,
            images_per_s: b as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Writes `run_dir/checkpoints/step_N/{backbone,head,optimizer}.safetensors` + `state.json`
    /// atomically. `backbone.safetensors` has the reference key names: it loads anywhere an
    /// insightface/AdaFace checkpoint does.
    pub fn save(&self, run_dir: &Path) -> Result<PathBuf> {
        crate::run_dir::save_checkpoint_dir(run_dir, self.step, |tmp| {
            for (vm, name) in [(&self.backbone_vars, "backbone"), (&self.head_vars, "head")] {
                crate::run_dir::save_vars(vm, &tmp.join(format!("{name}.safetensors")))?;
            }
            self.opt.save(&tmp.join("optimizer.safetensors"))?;
            let state = FrState {
                step: self.step,
                classes: self.head.classes(),
                config: self.cfg.clone(),
            };
            crate::run_dir::write_state(tmp, &state)
        })
    }

    /// Restores weights, statistics, momentum and step from a checkpoint folder.
    pub fn load(&mut self, ckpt: &Path) -> Result<()> {
        let state: FrState = crate::run_dir::read_state(ckpt)?;
        if state.config.backbone != self.cfg.backbone || state.classes != self.head.classes() {
            return Err(Error::Config(format!(
                "{} was trained with another backbone or number of identities ({})",
                ckpt.display(),
                state.classes
            )));
        }
        for (vm, name) in [
            (&mut self.backbone_vars, "backbone"),
            (&mut self.head_vars, "head"),
        ] {
            crate::run_dir::load_vars(vm, &ckpt.join(format!("{name}.safetensors")))?;
        }
        self.opt.load(&ckpt.join("optimizer.safetensors"))?;
        self.step = state.step;
        Ok(())
    }
}

/// A trained backbone from a train-fr checkpoint folder or run folder (its newest checkpoint).
pub fn load_backbone(path: &Path, device: &Device) -> Result<(IResNet, PathBuf)> {
    let ckpt = if path.join("state.json").exists() {
        path.to_path_buf()
    } else {
        crate::run_dir::latest_checkpoint(path).ok_or_else(|| {
            Error::Config(format!(
                "{}: not a train-fr checkpoint nor a run with checkpoints",
                path.display()
            ))
        })?
    };
    let state = crate::run_dir::read_state::<FrState>(&ckpt)?;
    let vb = crate::checkpoint::var_builder(&ckpt.join("backbone.safetensors"), None, device)?;
    Ok((IResNet::new(state.config.backbone, vb)?, ckpt))
}
