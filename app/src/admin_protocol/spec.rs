//! What a job is: its kind and its parameters (`JobSpec`, stored as JSON by the server), validated
//! field by field so forms and API clients get every mistake at once. Shared: the server validates
//! every submission with it, and the browser's launch form writes these specs.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{FieldError, Presets};

/// The kinds of jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    TrainDiffusion,
    TrainFr,
    Generate,
    Eval,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrainDiffusion => "train-diffusion",
            Self::TrainFr => "train-fr",
            Self::Generate => "generate",
            Self::Eval => "eval",
        }
    }

    /// Whether a pause can checkpoint and continue later (evaluation has nothing to keep).
    pub fn pausable(self) -> bool {
        self != Self::Eval
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| format!("unknown job kind `{s}`"))
    }
}

fn err(errors: &mut Vec<FieldError>, field: impl Into<String>, message: impl Into<String>) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

/// Largest seed: 2^53 − 1 (exact in JSON numbers and JavaScript), as in the demo.
pub use crate::demo_protocol::MAX_SEED;

/// Train the CemiFace generator (`cemiface train-diffusion`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainDiffusionSpec {
    /// A preset: demo-64, paper-112 or tiny-32.
    pub config: String,
    /// Total steps (default: the preset's).
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Sample a grid of held-out identities at each checkpoint.
    #[serde(default = "yes")]
    pub sample_grid: bool,
}

fn yes() -> bool {
    true
}

/// Generate a labelled data set (`cemiface generate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    /// `default` (the server's generator) or `job:<id>` (a train-diffusion job's newest checkpoint).
    #[serde(default = "default_generator")]
    pub generator: String,
    /// `dcgan` (the face GAN's samples) or `random` (random unit identities).
    #[serde(default = "default_inquiries")]
    pub inquiries: String,
    pub identities: usize,
    pub images_per_identity: usize,
    #[serde(default = "default_m")]
    pub m: Vec<f32>,
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default = "one")]
    pub eta: f64,
    #[serde(default)]
    pub seed: u64,
    /// `png` or `jpeg`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Also write `train.rec` / `train.idx`.
    #[serde(default)]
    pub rec: bool,
}

fn default_generator() -> String {
    "default".into()
}
fn default_inquiries() -> String {
    "dcgan".into()
}
fn default_m() -> Vec<f32> {
    vec![0.0]
}
fn default_steps() -> usize {
    20
}
fn one() -> f64 {
    1.0
}
fn default_format() -> String {
    "png".into()
}

/// Train a face-recognition model (`cemiface train-fr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainFrSpec {
    /// A preset: fr-tiny or fr-paper.
    pub config: String,
    /// `job:<id>` (a finished generate job's data set) or a folder / `.rec` on the server.
    pub data: String,
    #[serde(default)]
    pub steps: Option<u64>,
    /// Images per step (default: the preset's).
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// Verification accuracy (`cemiface eval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// `job:<id>` (a train-fr job's newest checkpoint); absent: the dlib network.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// insightface `.bin` sets or pair lists on the server.
    pub sets: Vec<String>,
}

/// A job's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum JobSpec {
    TrainDiffusion(TrainDiffusionSpec),
    TrainFr(TrainFrSpec),
    Generate(GenerateSpec),
    Eval(EvalSpec),
}

/// A `job:<id>` reference.
pub fn job_ref(s: &str) -> Option<i64> {
    s.strip_prefix("job:").and_then(|n| n.parse().ok())
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::TrainDiffusion(_) => JobKind::TrainDiffusion,
            Self::TrainFr(_) => JobKind::TrainFr,
            Self::Generate(_) => JobKind::Generate,
            Self::Eval(_) => JobKind::Eval,
        }
    }

    /// Units of work known before the job starts (0 when only the run knows).
    pub fn planned_units(&self) -> u64 {
        match self {
            Self::Generate(g) => (g.identities * g.images_per_identity) as u64,
            Self::TrainDiffusion(t) => t.steps.unwrap_or(0),
            Self::TrainFr(t) => t.steps.unwrap_or(0),
            Self::Eval(_) => 0,
        }
    }

    /// Images a generate job makes (quotas count these).
    pub fn planned_images(&self) -> u64 {
        match self {
            Self::Generate(g) => (g.identities * g.images_per_identity) as u64,
            _ => 0,
        }
    }

    /// Checks ranges and names against the server's `presets`; `paths_allowed` says whether server
    /// paths may be named (admins only). References to other jobs are checked by the caller, which
    /// knows the store.
    pub fn validate(&self, paths_allowed: bool, presets: &Presets) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        match self {
            Self::TrainDiffusion(t) => {
                let names = &presets.train_diffusion;
                if !names.contains(&t.config) {
                    err(
                        &mut e,
                        "config",
                        format!("unknown preset; one of {}", names.join(", ")),
                    );
                }
                if t.steps.is_some_and(|s| s == 0 || s > 10_000_000) {
                    err(&mut e, "steps", "must be between 1 and 10000000");
                }
                if t.batch_size.is_some_and(|b| b == 0 || b > 4096) {
                    err(&mut e, "batch_size", "must be between 1 and 4096");
                }
                if t.checkpoint_every.is_some_and(|c| c == 0) {
                    err(&mut e, "checkpoint_every", "must be at least 1");
                }
                if t.seed.is_some_and(|s| s > MAX_SEED) {
                    err(&mut e, "seed", format!("must be at most {MAX_SEED}"));
                }
            }
            Self::Generate(g) => {
                if !(g.generator == "default" || job_ref(&g.generator).is_some()) {
                    err(
                        &mut e,
                        "generator",
                        "`default` or `job:<id>` of a train-diffusion job",
                    );
                }
                if !["dcgan", "random"].contains(&g.inquiries.as_str()) {
                    err(&mut e, "inquiries", "`dcgan` or `random`");
                }
                if !(1..=100_000).contains(&g.identities) {
                    err(&mut e, "identities", "must be between 1 and 100000");
                }
                if !(1..=1000).contains(&g.images_per_identity) {
                    err(&mut e, "images_per_identity", "must be between 1 and 1000");
                }
                if g.m.is_empty() || g.m.len() > 16 {
                    err(&mut e, "m", "give 1 to 16 similarity targets");
                }
                for (i, m) in g.m.iter().enumerate() {
                    if !(-1.0..=1.0).contains(m) {
                        err(&mut e, format!("m[{i}]"), format!("{m} is outside [-1, 1]"));
                    }
                }
                if !(1..=1000).contains(&g.steps) {
                    err(&mut e, "steps", "must be between 1 and 1000");
                }
                if !(0.0..=1.0).contains(&g.eta) {
                    err(&mut e, "eta", "must be in [0, 1]");
                }
                if g.seed > MAX_SEED {
                    err(&mut e, "seed", format!("must be at most {MAX_SEED}"));
                }
                if !["png", "jpeg"].contains(&g.format.as_str()) {
                    err(&mut e, "format", "`png` or `jpeg`");
                }
            }
            Self::TrainFr(t) => {
                let names = &presets.train_fr;
                if !names.contains(&t.config) {
                    err(
                        &mut e,
                        "config",
                        format!("unknown preset; one of {}", names.join(", ")),
                    );
                }
                if job_ref(&t.data).is_none() && !paths_allowed {
                    err(&mut e, "data", "`job:<id>` of a generate job");
                }
                if t.steps.is_some_and(|s| s == 0) {
                    err(&mut e, "steps", "must be at least 1");
                }
                if t.batch_size.is_some_and(|b| b == 0 || b > 65_536) {
                    err(&mut e, "batch_size", "must be between 1 and 65536");
                }
            }
            Self::Eval(v) => {
                if v.checkpoint.as_deref().is_some_and(|c| job_ref(c).is_none()) {
                    err(&mut e, "checkpoint", "`job:<id>` of a train-fr job");
                }
                if v.sets.is_empty() {
                    err(&mut e, "sets", "name at least one .bin set or pair list");
                }
                if !paths_allowed {
                    err(&mut e, "sets", "evaluation sets are server paths: admins only");
                }
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(v: serde_json::Value) -> Result<JobSpec, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn presets() -> Presets {
        Presets {
            train_diffusion: vec!["latent-dcgan".into(), "tiny-32".into()],
            train_fr: vec!["fr-tiny".into()],
        }
    }

    #[test]
    fn generate_defaults_and_unknown_fields() {
        let s =
            gen(serde_json::json!({"kind": "generate", "identities": 2, "images_per_identity": 3})).unwrap();
        let JobSpec::Generate(g) = &s else { panic!() };
        assert_eq!((g.steps, g.m.clone(), g.format.as_str()), (20, vec![0.0], "png"));
        assert!(s.validate(false, &presets()).is_ok());
        let bad = gen(
            serde_json::json!({"kind": "generate", "identities": 2, "images_per_identity": 3, "colour": 1}),
        );
        assert!(bad.unwrap_err().to_string().contains("colour"));
    }

    #[test]
    fn every_bad_field_is_reported() {
        let s = gen(
            serde_json::json!({"kind": "generate", "identities": 0, "images_per_identity": 3,
            "m": [0.0, 1.5], "steps": 0, "seed": MAX_SEED + 1, "format": "gif"}),
        )
        .unwrap();
        let fields: Vec<String> = s
            .validate(false, &presets())
            .unwrap_err()
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["identities", "m[1]", "steps", "seed", "format"]);
    }

    #[test]
    fn server_paths_are_for_admins() {
        let s = gen(serde_json::json!({"kind": "train-fr", "config": "fr-tiny", "data": "/etc"})).unwrap();
        assert!(s.validate(false, &presets()).is_err());
        assert!(s.validate(true, &presets()).is_ok());
    }
}
