//! Algorithm 1 in z-space. Each step:
//! - **MSE** on `batch_size` teacher pairs drawn from the bank (uniformly, or evenly over similarity
//!   bins with `teachers = "balanced"`): the anchor is the identity
//!   (z_a, C_id), the teacher z0 is the data, and m is the teacher's measured similarity rounded to the
//!   0.04 grid (exact labels, no extra E_id pass; below 0 divided by |`m_floor`|); t ~ U{0…T−1}, ε ~ N(0, I), L_mse = ‖ε̂ − ε‖²
//!   (or ‖x̂0 − z0‖² for the `x0_residual` prediction).
//! - **SimMat** on `sim_mat_batch` more samples with m drawn from the paper's grid over [−1, 1]: the
//!   teacher is the anchor's bank entry nearest to m's target similarity m* (m itself, or m·|`m_floor`|
//!   below 0; its similarity s_data), ẑ0 is decoded by G and scored by the centred E_id:
//!   (1 − t/T)·|s_data − s| + (t/T)·|m* − s| (`sim_mat_toward`; the paper's |1 − s| when the teacher
//!   is the anchor). These samples count in the MSE too.
//!
//! L = L_mse + λ·L_SimMat; AdamW with clipping, EMA, checkpoints that resume exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::bank::Bank;
use super::config::{LatentConfig, Prediction, TeacherSampling};
use super::denoiser::LatentDenoiser;
use crate::data::dcgan::{Dcgan, NZ};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::sim_mat::{m_grid, sim_mat_toward, SimMatForm};
use crate::identity::centring::{IdentityMean, MeanProvenance};
use crate::identity::encoder::{cosine_rows, IdentityEncoder};
use crate::noise::NoiseRng;
use crate::optim::trainable::Trainable;
use crate::run_dir::{read_state, save_checkpoint_dir, write_state, StepMetrics};
use crate::{Error, Result};

/// File of the shipped anchors (inversion starts) inside a checkpoint.
pub const ANCHORS_FILE: &str = "anchors.safetensors";

/// `state.json` of a latent checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatentState {
    pub kind: String,
    pub step: u64,
    pub rng_state: u64,
    pub rng_spare: Option<u64>,
    pub config: LatentConfig,
    pub identity_mean: MeanProvenance,
}

/// The trainer.
pub struct LatentTrainer {
    pub cfg: LatentConfig,
    net: LatentDenoiser,
    /// The network's variables, AdamW and EMA.
    weights: Trainable,
    schedule: NoiseSchedule,
    gan: Dcgan,
    encoder: Arc<dyn IdentityEncoder>,
    bank: Bank,
    mean: IdentityMean,
    anchor_c: Tensor,
    rng: NoiseRng,
    grid: Vec<f32>,
    /// Teacher rows by similarity bin of the m grid (non-empty bins only), for `balanced` sampling.
    bins: Vec<Vec<u32>>,
    /// Running sum of the bins' weights, min(size, mean size): common bins drawn equally often,
    /// rare ones (a handful of teachers at the extremes) no more often than they have teachers.
    bin_cumulative: Vec<usize>,
    device: Device,
    step: u64,
}

/// Teacher rows grouped by their similarity's grid value, in grid order, empty bins left out.
fn similarity_bins(mix_s: &[f32], step: f64, label: impl Fn(f32) -> f32) -> Vec<Vec<u32>> {
    let mut bins: std::collections::BTreeMap<i64, Vec<u32>> = Default::default();
    for (j, s) in mix_s.iter().map(|&s| label(s)).enumerate() {
        bins.entry((to_grid(s, step) as f64 / step).round() as i64)
            .or_default()
            .push(j as u32);
    }
    bins.into_values().collect()
}

/// Running sum of min(bin size, mean bin size).
fn bin_weights(bins: &[Vec<u32>]) -> Vec<usize> {
    let mean = bins
        .iter()
        .map(Vec::len)
        .sum::<usize>()
        .div_ceil(bins.len().max(1));
    bins.iter()
        .scan(0, |acc, b| {
            *acc += b.len().min(mean);
            Some(*acc)
        })
        .collect()
}

/// SimMat's m grid for a stage: the grid's values ≥ `m_min` (never empty: at least its top value).
fn grid_from(grid: &[f32], m_min: f32) -> &[f32] {
    let first = grid.partition_point(|&g| g < m_min - 1e-6);
    &grid[first.min(grid.len() - 1)..]
}

/// Rounds to the nearest value of the grid with spacing `step` over [−1, 1].
fn to_grid(v: f32, step: f64) -> f32 {
    let n = (2.0 / step).round();
    let i = ((v as f64 + 1.0) / 2.0 * n).round().clamp(0.0, n);
    (-1.0 + 2.0 * i / n) as f32
}

impl LatentTrainer {
    /// `encoder` is the raw E_id (the trainer centres with the bank's μ).
    pub fn new(
        cfg: LatentConfig,
        gan: Dcgan,
        encoder: Arc<dyn IdentityEncoder>,
        bank: Bank,
        device: &Device,
    ) -> Result<Self> {
        let t = &cfg.train;
        if t.batch_size == 0 || t.checkpoint_every == 0 || cfg.denoiser.latent_dim != NZ {
            return Err(Error::Config(format!(
                "train.batch_size and train.checkpoint_every must be positive and denoiser.latent_dim {NZ}"
            )));
        }
        if !(-1.0..0.0).contains(&t.m_floor) {
            return Err(Error::Config(format!(
                "train.m_floor is {} but must be in [-1, 0): the similarity m = -1 stands for",
                t.m_floor
            )));
        }
        if let Some(f) = &t.fine_tune {
            if !(-1.0..=1.0).contains(&f.m_min) {
                return Err(Error::Config(format!(
                    "train.fine_tune.m_min is {} but must be in [-1, 1]: the lowest SimMat target",
                    f.m_min
                )));
            }
        }
        if cfg.denoiser.id_dim != encoder.dim() {
            return Err(Error::Config(format!(
                "denoiser.id_dim is {} but the encoder {} gives {}-d embeddings",
                cfg.denoiser.id_dim,
                encoder.name(),
                encoder.dim()
            )));
        }
        let (net, weights) = Trainable::new(
            |vb| LatentDenoiser::new(cfg.denoiser.clone(), vb),
            device,
            t.seed,
            cfg.optimizer.clone(),
            t.ema_max_decay,
        )?;
        let mean = bank.mean(&encoder.name(), &cfg)?;
        let bins = similarity_bins(&bank.mix_s, t.m_step, |s| t.label(s));
        Ok(Self {
            schedule: NoiseSchedule::new(&cfg.schedule)?,
            grid: m_grid(t.m_step),
            bin_cumulative: bin_weights(&bins),
            bins,
            rng: NoiseRng::new(t.seed),
            anchor_c: bank.anchor_c()?,
            mean,
            net,
            weights,
            gan,
            encoder,
            bank,
            cfg,
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

    pub fn identity_mean(&self) -> &IdentityMean {
        &self.mean
    }

    /// The raw E_id (for choosing the sample grid's identities).
    pub fn encoder_for_grid(&self) -> Arc<dyn IdentityEncoder> {
        self.encoder.clone()
    }

    /// One optimisation step.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let stage = self.cfg.train.sim_mat_stage(self.step);
        let (bm, bs) = (self.cfg.train.batch_size, stage.batch);
        let grid = grid_from(&self.grid, stage.m_min);
        let (n, k) = (self.bank.anchors(), self.bank.mixes);
        let mut rows = Vec::with_capacity(bm + bs); // teacher rows
        let mut anchors = Vec::with_capacity(bm + bs);
        let mut m = Vec::with_capacity(bm + bs);
        let mut s_data = Vec::with_capacity(bs);
        let mut s_target = Vec::with_capacity(bs);
        for _ in 0..bm {
            let j = match self.cfg.train.teachers {
                TeacherSampling::Uniform => self.rng.next_u32() as usize % (n * k),
                TeacherSampling::Balanced => {
                    let total = *self.bin_cumulative.last().expect("a bank has teachers");
                    let u = self.rng.next_u32() as usize % total;
                    let bin = &self.bins[self.bin_cumulative.partition_point(|&c| c <= u)];
                    bin[self.rng.next_u32() as usize % bin.len()] as usize
                }
            };
            rows.push(j as u32);
            anchors.push((j / k) as u32);
            m.push(to_grid(
                self.cfg.train.label(self.bank.mix_s[j]),
                self.cfg.train.m_step,
            ));
        }
        for _ in 0..bs {
            let a = self.rng.next_u32() as usize % n;
            let target = grid[self.rng.next_u32() as usize % grid.len()];
            let wanted = self.cfg.train.target(target);
            let (j, s) = self.bank.nearest(a, wanted);
            rows.push(j as u32);
            anchors.push(a as u32);
            m.push(target);
            s_data.push(s);
            s_target.push(wanted);
        }
        let b = bm + bs;
        let t: Vec<u32> = (0..b)
            .map(|_| self.rng.next_u32() % self.schedule.len() as u32)
            .collect();
        let dev = &self.device;
        let rows_t = Tensor::new(rows.as_slice(), dev)?;
        let anchors_t = Tensor::new(anchors.as_slice(), dev)?;
        let z0 = self.bank.mix_z.index_select(&rows_t, 0)?;
        let z_a = self.bank.anchor_z.index_select(&anchors_t, 0)?;
        let c_id = self.anchor_c.index_select(&anchors_t, 0)?;
        let noise = self.rng.randn(&[b, NZ], dev)?;
        let z_t = self
            .schedule
            .q_sample(&z0.reshape((b, NZ, 1, 1))?, &t, &noise.reshape((b, NZ, 1, 1))?)?
            .reshape((b, NZ))?;
        let m_tensor = Tensor::new(m.as_slice(), dev)?;
        let (eps, x0_hat) = self
            .net
            .predict(&self.schedule, &z_t, &t, &z_a, &c_id, &m_tensor)?;
        let mse = match self.cfg.denoiser.prediction {
            Prediction::Eps => (&eps - &noise)?.sqr()?.mean_all()?,
            Prediction::X0Residual => (&x0_hat - &z0)?.sqr()?.mean_all()?,
        };
        let (loss, sim_mat, rec, sim) = if bs > 0 {
            let tail = |x: &Tensor| x.narrow(0, bm, bs);
            let ts = &t[bm..];
            let clip = self.cfg.train.x0_clip;
            let z0_hat = tail(&x0_hat)?.clamp(-clip, clip)?;
            let d = self.encoder.descriptors(&self.gan.generate(&z0_hat)?)?;
            let s = cosine_rows(&d.broadcast_sub(&self.mean.mean)?, &tail(&c_id)?)?;
            let gamma = self.schedule.fraction(ts, dev)?;
            let sd = Tensor::new(s_data.as_slice(), dev)?;
            let st = Tensor::new(s_target.as_slice(), dev)?;
            let sm = sim_mat_toward(&s, &sd, &st, &gamma, SimMatForm::Absolute)?;
            ((&mse + (&sm.loss * stage.lambda)?)?, sm.loss, sm.rec, sm.sim)
        } else {
            let z = mse.zeros_like()?;
            (mse.clone(), z.clone(), z.clone(), z)
        };
        let grads = loss.backward()?;
        let grad_norm = self.weights.step(&grads, self.step)?;
        self.step += 1;
        let scalar = |t: &Tensor| -> Result<f32> { Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?) };
        Ok(StepMetrics {
            step: self.step,
            loss: scalar(&loss)?,
            mse: scalar(&mse)?,
            sim_mat: scalar(&sim_mat)?,
            rec: scalar(&rec)?,
            sim: scalar(&sim)?,
            grad_norm,
            lr: self.weights.opt.learning_rate(),
            images_per_s: bs as f64 / started.elapsed().as_secs_f64(),
        })
    }

    /// Writes `run_dir/checkpoints/step_N/`: model, EMA and optimizer weights, μ, the anchors (the
    /// inversion's starting points) and `state.json`, atomically.
    pub fn save(&self, run_dir: &Path) -> Result<PathBuf> {
        save_checkpoint_dir(run_dir, self.step, |tmp| {
            self.weights.save(tmp)?;
            self.mean.save(tmp)?;
            save_anchors(tmp, &self.bank.anchor_z, &self.anchor_c)?;
            let (rng_state, rng_spare) = self.rng.state();
            let state = LatentState {
                kind: "latent".into(),
                step: self.step,
                rng_state,
                rng_spare,
                config: self.cfg.clone(),
                identity_mean: self.mean.provenance.clone(),
            };
            write_state(tmp, &state)
        })
    }

    /// Restores weights, EMA, optimizer, step and RNG from a checkpoint folder.
    pub fn load(&mut self, ckpt: &Path) -> Result<()> {
        let state: LatentState = read_state(ckpt)?;
        if state.config.denoiser != self.cfg.denoiser || state.config.bank != self.cfg.bank {
            return Err(Error::Config(format!(
                "{} was trained with a different denoiser or bank config",
                ckpt.display()
            )));
        }
        self.weights.load(ckpt, &self.device)?;
        self.step = state.step;
        self.rng = NoiseRng::from_state(state.rng_state, state.rng_spare);
        Ok(())
    }
}

/// Writes the anchors' latents and centred embeddings.
pub fn save_anchors(dir: &Path, z: &Tensor, c: &Tensor) -> Result<()> {
    let path = dir.join(ANCHORS_FILE);
    let map: HashMap<String, Tensor> = [("z".to_string(), z.clone()), ("c".to_string(), c.clone())].into();
    candle_core::safetensors::save(&map, &path).map_err(|e| Error::Format {
        path: path.clone(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn balanced_bins_group_teachers_by_grid_value() {
        let bins = super::similarity_bins(&[1.0, 0.51, -0.59, 0.99, 0.53, 0.02], 0.04, |s| s);
        // −0.6, 0.0, 0.52 (0.51 and 0.53), 1.0 (1.0 and 0.99), in grid order.
        assert_eq!(bins, vec![vec![2], vec![5], vec![1, 4], vec![0, 3]]);
        // Weights min(size, mean size = 2): the rare bins count once, the others twice.
        assert_eq!(super::bin_weights(&bins), vec![1, 2, 4, 6]);
        let big = vec![vec![0; 10], vec![0; 1], vec![0; 4]]; // mean 5
        assert_eq!(super::bin_weights(&big), vec![5, 6, 10]);
    }

    #[test]
    fn measured_similarities_snap_to_the_grid() {
        assert_eq!(super::to_grid(0.013, 0.04), 0.0);
        assert_eq!(super::to_grid(0.5, 0.04), 0.52);
        assert_eq!(super::to_grid(-1.3, 0.04), -1.0);
        assert_eq!(super::to_grid(0.999, 0.04), 1.0);
    }

    fn settings() -> super::super::config::LatentTrainSettings {
        super::super::config::LatentTrainSettings {
            batch_size: 256,
            sim_mat_batch: 8,
            steps: 1,
            lambda: 0.05,
            m_step: 0.04,
            ema_max_decay: 0.999,
            checkpoint_every: 1,
            seed: 0,
            x0_clip: 4.0,
            teachers: Default::default(),
            m_floor: -0.4,
            fine_tune: None,
        }
    }

    #[test]
    fn the_fine_tune_stage_takes_over_sim_mat_from_its_step() {
        use super::super::config::{FineTune, SimMatStage};
        let mut t = settings();
        let base = SimMatStage {
            batch: 8,
            lambda: 0.05,
            m_min: -1.0,
        };
        assert_eq!(t.sim_mat_stage(0), base);
        assert_eq!(
            t.sim_mat_stage(u64::MAX),
            base,
            "no stage: the base settings throughout"
        );
        t.fine_tune = Some(FineTune {
            from_step: 8000,
            lambda: 0.2,
            sim_mat_batch: 16,
            m_min: 0.0,
        });
        assert_eq!(t.sim_mat_stage(7999), base);
        let late = SimMatStage {
            batch: 16,
            lambda: 0.2,
            m_min: 0.0,
        };
        assert_eq!((t.sim_mat_stage(8000), t.sim_mat_stage(9999)), (late, late));
        // The stage's grid: m ≥ m_min only; −1 keeps every value (the same draws as the base).
        let grid = crate::diffusion::sim_mat::m_grid(0.04);
        assert_eq!(super::grid_from(&grid, -1.0).len(), 51);
        let upper = super::grid_from(&grid, 0.0);
        assert_eq!((upper.len(), upper[0], upper[25]), (26, 0.0, 1.0));
        assert!((super::grid_from(&grid, -0.5)[0] + 0.48).abs() < 1e-6);
        assert_eq!(super::grid_from(&grid, 1.0), &[1.0]);
    }

    #[test]
    fn m_floor_spreads_negative_targets_over_the_reachable_similarities() {
        let mut t = settings();
        // Below 0 the label is s / 0.4 (clamped at −1); at and above 0 it is s.
        for (s, label) in [
            (-0.6, -1.0),
            (-0.4, -1.0),
            (-0.2, -0.5),
            (-0.02, -0.05),
            (0.0, 0.0),
            (0.3, 0.3),
            (1.0, 1.0),
        ] {
            assert!((t.label(s) - label).abs() < 1e-6, "label({s}) = {}", t.label(s));
        }
        // target inverts label on [−1, 1].
        for m in [-1.0f32, -0.5, -0.04, 0.0, 0.5, 1.0] {
            assert!((t.label(t.target(m)) - m).abs() < 1e-6, "m = {m}");
        }
        assert!((t.target(-1.0) + 0.4).abs() < 1e-6);
        // Balanced bins follow the labels: −0.2 and −0.5 are no longer neighbours of 0.
        let bins = super::similarity_bins(&[-0.2, -0.5, -0.02, 0.5], 0.04, |s| t.label(s));
        assert_eq!(bins, vec![vec![1], vec![0], vec![2], vec![3]]);
        // The default leaves m as the similarity.
        t.m_floor = -1.0;
        assert_eq!(t.label(-0.3), -0.3);
        assert_eq!(t.target(-0.3), -0.3);
    }
}
