//! Reading PyTorch-world checkpoints: `.safetensors`, and PyTorch zip pickles (`.pt`, `.pth`, `.ckpt`,
//! `.tar`) whose state dict sits at the top level or under a key (`state_dict`, `netG_state_dict`, …),
//! with wrapper prefixes (`model.`, `module.`, `backbone.`) stripped so keys equal the module's own names.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// Keys under which training scripts commonly nest the state dict, tried in order after the top level.
const NESTED_KEYS: [&str; 4] = ["state_dict", "model", "netG_state_dict", "model_state_dict"];
/// Wrapper prefixes stripped when every remaining key of interest carries them.
const PREFIXES: [&str; 3] = ["model.", "module.", "backbone."];

/// All tensors of a checkpoint, by key. `key`: the pickle's dict key holding the state dict, or `None`
/// to find it (top level, then [`NESTED_KEYS`]).
pub fn load(path: &Path, key: Option<&str>, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tensors: Vec<(String, Tensor)> = if ext == "safetensors" {
        candle_core::safetensors::load(path, device)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?
            .into_iter()
            .collect()
    } else {
        let read = |k: Option<&str>| {
            candle_core::pickle::read_all_with_key(path, k)
                .map_err(|e| bad(format!("not a readable PyTorch zip checkpoint: {e}")))
        };
        let mut found = match key {
            Some(k) => read(Some(k))?,
            None => read(None)?,
        };
        if found.is_empty() && key.is_none() {
            for k in NESTED_KEYS {
                if let Ok(t) = read(Some(k)) {
                    if !t.is_empty() {
                        found = t;
                        break;
                    }
                }
            }
        }
        found
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(device)?)))
            .collect::<Result<_>>()?
    };
    if tensors.is_empty() {
        return Err(bad(format!(
            "no tensors found (looked at the top level and under {NESTED_KEYS:?}); pass the key holding the state dict"
        )));
    }
    Ok(strip_prefix(tensors))
}

/// Drops a wrapper prefix when it is the most common first segment (e.g. Lightning's `model.`, with
/// the margin head's `head.*` left out).
fn strip_prefix(tensors: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    let count = |p: &str| tensors.iter().filter(|(k, _)| k.starts_with(p)).count();
    match PREFIXES.iter().map(|p| (count(p), *p)).max() {
        Some((n, p)) if n * 2 > tensors.len() => tensors
            .into_iter()
            .filter_map(|(k, t)| k.strip_prefix(p).map(|s| (s.to_owned(), t)))
            .collect(),
        _ => tensors.into_iter().collect(),
    }
}

/// A `VarBuilder` over a checkpoint (f32). Missing keys or wrong shapes fail when the model asks for
/// them, with the key in the message.
pub fn var_builder(path: &Path, key: Option<&str>, device: &Device) -> Result<VarBuilder<'static>> {
    Ok(VarBuilder::from_tensors(
        load(path, key, device)?,
        DType::F32,
        device,
    ))
}

/// A network on freshly initialised random weights held as plain tensors, as loaded weights are:
/// `build` runs once on a `VarMap` (to draw the weights) and again on their detached copies, so
/// the network records no autograd graph and its weights get no gradients. For benchmarks, whose
/// timings do not depend on the weights' values.
pub fn random_frozen<N>(device: &Device, build: impl Fn(VarBuilder<'static>) -> Result<N>) -> Result<N> {
    let vm = candle_nn::VarMap::new();
    build(VarBuilder::from_varmap(&vm, DType::F32, device))?;
    let tensors: HashMap<String, Tensor> = vm
        .data()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    build(VarBuilder::from_tensors(tensors, DType::F32, device))
}
