//! The latent preset's configuration (`configs/latent-dcgan.toml`; unknown keys are errors).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::diffusion::schedule::ScheduleConfig;
use crate::diffusion::trainer::EncoderConfig;
use crate::optim::adamw::AdamWConfig;

/// The whole run, saved beside every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentConfig {
    pub denoiser: DenoiserConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    pub optimizer: AdamWConfig,
    pub train: LatentTrainSettings,
    pub bank: BankConfig,
    pub inversion: InversionConfig,
    #[serde(default)]
    pub decoder: DecoderConfig,
    pub encoder: EncoderConfig,
}

/// The network's output: ε̂ (`eps`, DDPM's), or x̂0 − z_a (`x0_residual`): the clean latent as an
/// offset from the inquiry's latent, so that "stay at the inquiry" (m = 1) is the zero output the
/// network starts from, and its loss is the MSE on x̂0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    #[default]
    Eps,
    X0Residual,
}

/// The denoising network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenoiserConfig {
    /// Width of z (the DCGAN's 100).
    pub latent_dim: usize,
    /// Width of C_id (dlib: 128).
    pub id_dim: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Residual blocks.
    pub blocks: usize,
    /// Width of the timestep and condition embeddings.
    pub emb_dim: usize,
    /// What the network's output means (default `eps`).
    #[serde(default)]
    pub prediction: Prediction,
}

/// Training knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatentTrainSettings {
    /// Teacher pairs per step for the MSE term.
    pub batch_size: usize,
    /// Samples per step that go through G and E_id for the SimMat term.
    pub sim_mat_batch: usize,
    pub steps: u64,
    /// λ of L_SimMat.
    pub lambda: f64,
    /// Spacing of the m grid over [−1, 1] (paper: 0.04).
    pub m_step: f64,
    pub ema_max_decay: f64,
    pub checkpoint_every: u64,
    pub seed: u64,
    /// ẑ0 is clipped to ±this many standard deviations (z ~ N(0, I)), in training and sampling.
    pub x0_clip: f32,
    /// How the MSE term draws its teachers: `uniform` over the bank (default; most teachers are
    /// near their anchor), or `balanced`: a similarity bin of the m grid first, weighted by
    /// min(teachers in it, mean per bin), then a teacher in it, so every well-populated target is
    /// trained as often as the common ones, and a bin of a handful of teachers is not repeated
    /// thousands of times.
    #[serde(default)]
    pub teachers: TeacherSampling,
    /// The similarity m = −1 stands for (default −1: m is the similarity itself). This decoder's
    /// faces are never much less similar than strangers (teachers reach −0.6 at the lowest, and
    /// G(−z_a) −0.15 on average), so with m_floor = −0.4 the targets m ∈ [−1, 0] spread over the
    /// reachable s ∈ [−0.4, 0]: a teacher's label is s / |m_floor| below 0 (clamped at −1) and
    /// SimMat's target for m < 0 is m·|m_floor|; m ≥ 0 is unchanged (docs/latent-generator.md §5).
    #[serde(default = "default_m_floor")]
    pub m_floor: f32,
    /// A second stage (`[train.fine_tune]`, off by default): from its `from_step` on, SimMat runs
    /// with its own λ, sub-batch and lowest m, so one config trains what a resume with a changed
    /// config would (docs/latent-generator.md §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTune>,
}

fn default_m_floor() -> f32 {
    -1.0
}

/// See [`LatentTrainSettings::fine_tune`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineTune {
    /// The first step (counted from 0, as `steps`) trained with these settings.
    pub from_step: u64,
    /// λ of L_SimMat from then on.
    pub lambda: f64,
    /// SimMat samples per step from then on.
    pub sim_mat_batch: usize,
    /// SimMat's m is drawn from the grid's values ≥ this (default −1: the whole grid), so targets
    /// below what the decoder reaches can be left to the MSE.
    #[serde(default = "default_fine_tune_m_min")]
    pub m_min: f32,
}

fn default_fine_tune_m_min() -> f32 {
    -1.0
}

/// What SimMat does at one step: the base settings, or the fine-tune stage's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimMatStage {
    pub batch: usize,
    pub lambda: f64,
    pub m_min: f32,
}

impl LatentTrainSettings {
    /// SimMat's settings for the step that starts after `step` steps.
    pub fn sim_mat_stage(&self, step: u64) -> SimMatStage {
        match &self.fine_tune {
            Some(f) if step >= f.from_step => SimMatStage {
                batch: f.sim_mat_batch,
                lambda: f.lambda,
                m_min: f.m_min,
            },
            _ => SimMatStage {
                batch: self.sim_mat_batch,
                lambda: self.lambda,
                m_min: -1.0,
            },
        }
    }

    /// The condition m a teacher of measured similarity `s` is trained under (before the grid).
    pub fn label(&self, s: f32) -> f32 {
        if s < 0.0 {
            (s / self.m_floor.abs()).max(-1.0)
        } else {
            s
        }
    }

    /// The similarity a condition m asks for: the inverse of [`Self::label`] on [−1, 1].
    pub fn target(&self, m: f32) -> f32 {
        if m < 0.0 {
            m * self.m_floor.abs()
        } else {
            m
        }
    }
}

/// See [`LatentTrainSettings::teachers`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherSampling {
    #[default]
    Uniform,
    Balanced,
}

/// The seeded reference set: anchors (μ is their mean descriptor; each is an identity) and, per
/// anchor, latents moved away from it (`cos θ·z_a + sin θ·z_1`) with their measured similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    pub anchors: usize,
    /// Moved latents per anchor.
    pub mixes: usize,
    /// Largest θ as a multiple of π/2 (θ > π/2 points away from the anchor).
    pub max_angle: f32,
    /// θ = max_angle·π/2·u^angle_power over stratified u ∈ [0, 1): above 1, more teachers near the
    /// anchor (default 1.5).
    #[serde(default = "default_angle_power")]
    pub angle_power: f32,
    /// DCGAN filters for anchors (as the pixel presets' data source).
    pub min_luma: f32,
    pub min_flip_cos: f32,
    /// Anchors must also be faces the face detector finds (`FaceAligner::finds_face`, report-control's
    /// face rate): default false.
    #[serde(default)]
    pub faces: bool,
    /// Teachers must be faces the detector finds, too: a teacher it misses is drawn again (same θ, a
    /// new partner drawn the same way) up to `TEACHER_TRIES` times. Default false.
    #[serde(default)]
    pub teacher_faces: bool,
    /// What teachers move toward (default `gaussian`).
    #[serde(default)]
    pub toward: Toward,
    /// With `toward = "anchors"`: every other teacher's partner is drawn from this share of the
    /// other anchors, the least similar ones (default 0.1).
    #[serde(default = "default_dissimilar")]
    pub dissimilar: f32,
}

fn default_dissimilar() -> f32 {
    0.1
}

/// See [`BankConfig::toward`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Toward {
    /// An independent Gaussian latent z_1 (a random DCGAN sample, filtered or not).
    #[default]
    Gaussian,
    /// Another anchor (a filtered face with a measured similarity): every other teacher's partner is
    /// among the anchors least similar to this one (`dissimilar`), so teachers cover m < 0; at
    /// θ = π/2 the teacher is that anchor.
    Anchors,
}

/// Inversion: z_a = argmin 1 − cos_c(C_id, E_id(G(z))) + pixel·‖G(z) − face‖²/n + prior·(‖z‖²/d − 1)²,
/// by Adam (the pixel term when the inquiry's face is known; a sampling setting, not trained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InversionConfig {
    pub steps: usize,
    pub lr: f64,
    pub prior: f64,
    /// Weight of the mean squared pixel difference to the inquiry's face (in [−1, 1], at 64 px):
    /// it makes G(z_a) look like the face, not only score like it under E_id (0: identity only).
    #[serde(default)]
    pub pixel: f64,
}

/// The decoder G (the gan-face-generate DCGAN).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    /// Defaults to the assets folder's `gan-face-generate/weights.tar`.
    #[serde(default)]
    pub weights: Option<PathBuf>,
}

fn default_angle_power() -> f32 {
    1.5
}

impl LatentConfig {
    /// Whether a TOML text is a latent config (it has a `[denoiser]` table).
    pub fn is_latent_toml(text: &str) -> bool {
        toml_has_table(text, "denoiser")
    }
}

fn toml_has_table(text: &str, name: &str) -> bool {
    text.lines().any(|l| l.trim() == format!("[{name}]"))
}
