//! Optimisers and weight averaging: AdamW (the generator), SGD with momentum (face recognition), the
//! EMA of the generator's weights, the fused in-place CPU updates they share, and `Trainable` (a
//! network's variables with its AdamW and EMA). Each saves and restores its state as safetensors
//! beside a checkpoint (the helpers below) so runs resume exactly.

pub mod adamw;
pub mod ema;
pub mod fused_update;
pub mod sgd;
pub mod trainable;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Writes optimiser or EMA state: named tensors, as safetensors.
pub fn save_state(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::Format {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Reads what [`save_state`] wrote, onto `device`.
pub fn load_state(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| Error::Format {
        path: path.into(),
        message: format!("optimizer state: {e}"),
    })
}

/// The tensor `key` of a state file, checked to have the shape `dims` of its variable, in its own
/// storage (state is updated in place); None when the file lacks it.
pub fn state_tensor(
    state: &HashMap<String, Tensor>,
    key: &str,
    dims: &[usize],
    path: &Path,
) -> Result<Option<Tensor>> {
    let Some(x) = state.get(key) else { return Ok(None) };
    if x.dims() != dims {
        return Err(Error::Format {
            path: path.into(),
            message: format!("`{key}` has shape {:?}, model has {:?}", x.dims(), dims),
        });
    }
    Ok(Some(x.copy()?))
}

/// [`state_tensor`] for state every variable must have.
pub fn required_state_tensor(
    state: &HashMap<String, Tensor>,
    key: &str,
    dims: &[usize],
    path: &Path,
) -> Result<Tensor> {
    state_tensor(state, key, dims, path)?.ok_or_else(|| Error::Format {
        path: path.into(),
        message: format!("the state lacks `{key}`"),
    })
}
