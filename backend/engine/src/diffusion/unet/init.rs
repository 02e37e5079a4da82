//! Starting a UNet from an unconditional guided-diffusion checkpoint (`train-diffusion --init`),
//! as DCFace and CemiFace start from DCFace's FFHQ model (`ffhq_10m.pt`).
//!
//! The file is a PyTorch checkpoint in torch's zip format (`torch.save` since 1.6): a state dict
//! at the top, or under `state_dict` / `model` / `ema`, with or without a `module.` / `model.`
//! prefix. Every UNet key (`time_embed.*`, `input_blocks.*`, `middle_block.*`, `output_blocks.*`,
//! `out.*`) must be there with the model's shape; the condition path (`cond.*`) has no counterpart
//! and starts fresh. A checkpoint trained with `learn_sigma` has 6 output channels (ε, then the
//! variance interpolation): a 3-channel model takes the ε half of `out.2`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where the condition path's variables live (they start fresh).
const CONDITION_PREFIX: &str = "cond.";

/// What was loaded, saved beside the run as `init.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitReport {
    pub checkpoint: String,
    /// Where in the file the state dict was (`None`: at the top).
    pub state_dict_key: Option<String>,
    /// The prefix stripped from every key, if any.
    pub prefix: Option<String>,
    /// Variables copied from the checkpoint, and their number of values.
    pub loaded: usize,
    pub loaded_values: usize,
    /// Variables with no counterpart (the condition path), left at their fresh values.
    pub fresh: Vec<String>,
    /// Checkpoint tensors the model has no variable for (e.g. a class embedding).
    pub unused: Vec<String>,
    /// `out.2` came from a 6-channel (`learn_sigma`) checkpoint and kept its ε half.
    pub eps_half_of_learned_sigma: bool,
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.into(),
        message: message.into(),
    }
}

/// The checkpoint's tensors by name, and where the state dict was.
fn read_state_dict(path: &Path) -> Result<(HashMap<String, Tensor>, Option<String>)> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let not_torch = |e: candle_core::Error| {
        format_err(
            path,
            format!("not a PyTorch zip checkpoint (torch.save, torch >= 1.6): {e}"),
        )
    };
    let mut last_err = None;
    for key in [None, Some("state_dict"), Some("model"), Some("ema")] {
        match candle_core::pickle::read_all_with_key(path, key) {
            Ok(t) if !t.is_empty() => return Ok((t.into_iter().collect(), key.map(str::to_owned))),
            Ok(_) => {}
            Err(e) if key.is_none() => return Err(not_torch(e)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(format_err(
        path,
        format!(
            "no tensors at the top of the file or under state_dict / model / ema{}",
            last_err.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    ))
}

/// Copies a guided-diffusion UNet checkpoint into `vars` (the model's variables by name). Fails,
/// naming the keys, when a UNet key is missing or has another shape; nothing is changed then.
pub fn load_guided_diffusion(path: &Path, vars: &[(String, Var)]) -> Result<InitReport> {
    let (mut tensors, state_dict_key) = read_state_dict(path)?;
    let probe = "time_embed.0.weight";
    let prefix = if tensors.contains_key(probe) {
        None
    } else {
        ["module.", "model.", "model.module."]
            .into_iter()
            .find(|p| tensors.contains_key(&format!("{p}{probe}")))
            .map(str::to_owned)
    };
    if let Some(p) = &prefix {
        tensors = tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(p.as_str()).map(|k| (k.to_owned(), v)))
            .collect();
    }
    let mut plan = Vec::new();
    let (mut missing, mut mismatched, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    let mut eps_half = false;
    for (name, var) in vars {
        if name.starts_with(CONDITION_PREFIX) {
            fresh.push(name.clone());
            continue;
        }
        let Some(t) = tensors.remove(name) else {
            missing.push(name.clone());
            continue;
        };
        let (want, have) = (var.dims().to_vec(), t.dims().to_vec());
        let t = if want == have {
            t
        } else if name.starts_with("out.2.")
            && have.len() == want.len()
            && have[0] == 2 * want[0]
            && have[1..] == want[1..]
        {
            eps_half = true;
            t.narrow(0, 0, want[0])?
        } else {
            mismatched.push(format!("{name}: checkpoint {have:?}, model {want:?}"));
            continue;
        };
        plan.push((var, t));
    }
    if !missing.is_empty() || !mismatched.is_empty() {
        let list = |v: &[String]| v.iter().take(4).cloned().collect::<Vec<_>>().join("; ");
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "{} UNet keys missing ({})",
                missing.len(),
                list(&missing)
            ));
        }
        if !mismatched.is_empty() {
            parts.push(format!(
                "{} shapes differ ({})",
                mismatched.len(),
                list(&mismatched)
            ));
        }
        return Err(format_err(
            path,
            format!(
                "{}: not a guided-diffusion UNet of this preset's architecture (channels, \
                 channel_mult, num_res_blocks, attention levels must match)",
                parts.join(", ")
            ),
        ));
    }
    let loaded_values = plan.iter().map(|(v, _)| v.elem_count()).sum();
    let loaded = plan.len();
    for (var, t) in plan {
        var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
    }
    let mut unused: Vec<String> = tensors.into_keys().collect();
    unused.sort();
    fresh.sort();
    Ok(InitReport {
        checkpoint: path.display().to_string(),
        state_dict_key,
        prefix,
        loaded,
        loaded_values,
        fresh,
        unused,
        eps_half_of_learned_sigma: eps_half,
    })
}
