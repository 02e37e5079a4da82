//! A training run's folder, shared by every trainer (the pixel and latent generators, face
//! recognition): `checkpoints/step_NNNNNNNN/` written atomically, the newest complete one found on
//! resume, `metrics.jsonl` with one line per step, and the seeded re-initialisation that makes a run's
//! starting weights a function of its seed alone.
//!
//! ```text
//! run_dir/
//!   config.toml               the run's config, saved by the command that started it
//!   metrics.jsonl             one StepMetrics line per step (truncated to the checkpoint on resume)
//!   checkpoints/step_00000500/  model, EMA, optimiser and state.json (each trainer's own files)
//!   checkpoints/.tmp_step_…/    a checkpoint being written (never read)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::noise::NoiseRng;
use crate::{Error, Result};

/// One step's numbers (a line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    pub loss: f32,
    pub mse: f32,
    pub sim_mat: f32,
    pub rec: f32,
    pub sim: f32,
    pub grad_norm: f64,
    pub lr: f64,
    pub images_per_s: f64,
}

/// The newest complete checkpoint of a run, if any.
pub fn latest_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run_dir.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step_"))
        })
        .filter(|p| p.join("state.json").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Writes `run_dir/checkpoints/step_NNNNNNNN/` atomically: `write` fills a temporary folder, which
/// is then renamed into place, so a crash never leaves a half-written checkpoint that looks complete.
pub fn save_checkpoint_dir(
    run_dir: &Path,
    step: u64,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let root = run_dir.join("checkpoints");
    let final_dir = root.join(format!("step_{step:08}"));
    let tmp = root.join(format!(".tmp_step_{step:08}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    write(&tmp)?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    Ok(final_dir)
}

/// Re-draws the randomly initialised variables from the run's seed (Candle's CPU initialisers cannot
/// be seeded), keeping its scheme: Kaiming-normal weights (std √(2 / fan_in)) and biases uniform in
/// ±1/√fan_in; constant initialisations (norms, zero-initialised output layers) stay as they are.
pub fn seeded_init(vars: &[(String, Var)], seed: u64) -> Result<()> {
    let mut rng = NoiseRng::new(NoiseRng::derive(&[seed, 0x1217]));
    let fan_in = |v: &Var| -> usize { v.dims().iter().skip(1).product::<usize>().max(1) };
    let by_name: std::collections::HashMap<&str, &Var> = vars.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, var) in vars {
        let t = var.as_tensor();
        let constant = t.min_all()?.to_scalar::<f32>()? == t.max_all()?.to_scalar::<f32>()?;
        if constant {
            continue;
        }
        let n = t.elem_count();
        let values: Vec<f32> = if var.rank() >= 2 {
            let std = (2.0 / fan_in(var) as f32).sqrt();
            (0..n).map(|_| rng.normal() * std).collect()
        } else {
            let weight = name
                .strip_suffix("bias")
                .and_then(|p| by_name.get(format!("{p}weight").as_str()));
            let bound = 1.0 / (weight.map_or(n, |w| fan_in(w)) as f32).sqrt();
            (0..n)
                .map(|_| (rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * bound)
                .collect()
        };
        var.set(&Tensor::from_vec(values, t.dims(), t.device())?)?;
    }
    Ok(())
}

/// Appends one metrics line to `run_dir/metrics.jsonl`.
pub fn append_metrics(run_dir: &Path, m: &StepMetrics) -> Result<()> {
    let path = run_dir.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{}", serde_json::to_string(m).expect("metrics serialise")).map_err(|e| Error::io(&path, e))
}

/// Drops metric lines past `step` (after a resume, so the file holds one line per step).
pub fn truncate_metrics(run_dir: &Path, step: u64) -> Result<()> {
    let path = run_dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<StepMetrics>(l).is_ok_and(|m| m.step <= step))
        .collect();
    std::fs::write(&path, kept.iter().map(|l| format!("{l}\n")).collect::<String>())
        .map_err(|e| Error::io(&path, e))
}

/// Writes a trainer's bookkeeping (step, RNG state, resolved config) as `dir/state.json`.
pub fn write_state<T: Serialize>(dir: &Path, state: &T) -> Result<()> {
    let path = dir.join("state.json");
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
}

/// Reads what [`write_state`] wrote in a checkpoint folder.
pub fn read_state<T: DeserializeOwned>(ckpt: &Path) -> Result<T> {
    let path = ckpt.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path,
        message: e.to_string(),
    })
}

/// Saves a model's variables (safetensors, their own names).
pub fn save_vars(vars: &VarMap, path: &Path) -> Result<()> {
    vars.save(path).map_err(|e| Error::Format {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Loads into a model's variables what [`save_vars`] wrote.
pub fn load_vars(vars: &mut VarMap, path: &Path) -> Result<()> {
    vars.load(path).map_err(|e| Error::Format {
        path: path.into(),
        message: e.to_string(),
    })
}
