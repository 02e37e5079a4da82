//! `train-diffusion --init`: a guided-diffusion checkpoint written in torch's zip layout by
//! `scripts/reference/guided_diffusion_ckpt.py` (keys from guided-diffusion's `UNetModel`, not from
//! the engine) loads into the engine's UNet: every UNet tensor with its values, the condition path
//! fresh, the ε half of a `learn_sigma` output; wrong architectures and wrong files are refused.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::diffusion::condition::ConditionConfig;
use cemiface_engine::diffusion::unet::init::load_guided_diffusion;
use cemiface_engine::diffusion::unet::{UNet, UNetConfig};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The architecture the reference script wrote, with `out_channels` and `model_channels` to vary.
fn config(out_channels: usize, model_channels: usize) -> UNetConfig {
    UNetConfig {
        image_size: 16,
        in_channels: 3,
        out_channels,
        model_channels,
        channel_mult: vec![1, 1],
        num_res_blocks: 1,
        attention_resolutions: vec![2],
        num_head_channels: 32,
        skip_downsample_levels: vec![],
        condition: ConditionConfig {
            id_dim: 16,
            sim_dim: 8,
            tokens: 2,
        },
    }
}

fn build(cfg: UNetConfig) -> (UNet, Vec<(String, Var)>) {
    let vm = VarMap::new();
    let net = UNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let mut vars: Vec<(String, Var)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    (net, vars)
}

fn sum(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn a_learn_sigma_checkpoint_fills_every_unet_tensor_and_leaves_the_condition_fresh() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("guided_diffusion_small.json")).unwrap())
            .unwrap();
    let tensors = expected["tensors"].as_object().unwrap();
    let (net, vars) = build(config(3, 32));
    let fresh_before: Vec<f64> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("cond."))
        .map(|(_, v)| sum(v))
        .collect();
    let report = load_guided_diffusion(&golden("guided_diffusion_small.pt"), &vars).unwrap();

    let unet_vars = vars.iter().filter(|(k, _)| !k.starts_with("cond.")).count();
    assert_eq!(report.loaded, unet_vars);
    assert_eq!(report.loaded, tensors.len(), "one variable per checkpoint tensor");
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    assert!(report.eps_half_of_learned_sigma);
    assert!(!report.fresh.is_empty() && report.fresh.iter().all(|k| k.starts_with("cond.")));
    assert_eq!(
        (report.state_dict_key.clone(), report.prefix.clone()),
        (None, None)
    );

    let pth = candle_core::pickle::read_all(golden("guided_diffusion_small.pt")).unwrap();
    let pth: std::collections::HashMap<_, _> = pth.into_iter().collect();
    for (name, var) in &vars {
        if name.starts_with("cond.") {
            continue;
        }
        let want = if name.starts_with("out.2.") {
            // The ε half: the first 3 of the checkpoint's 6 output channels.
            sum(&pth[name].narrow(0, 0, 3).unwrap())
        } else {
            assert_eq!(
                var.dims(),
                tensors[name]["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect::<Vec<_>>()
                    .as_slice()
            );
            tensors[name]["sum"].as_f64().unwrap()
        };
        assert!((sum(var) - want).abs() < 1e-3, "{name}: {} vs {want}", sum(var));
    }
    let fresh_after: Vec<f64> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("cond."))
        .map(|(_, v)| sum(v))
        .collect();
    assert_eq!(fresh_before, fresh_after, "the condition path is untouched");

    // The loaded network computes: its output convolution is no longer zero.
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (1, 3, 16, 16), &dev).unwrap();
    let y = net
        .forward(
            &x,
            &Tensor::new(&[500u32], &dev).unwrap(),
            &Tensor::zeros((1, 16), DType::F32, &dev).unwrap(),
            &Tensor::new(&[0f32], &dev).unwrap(),
        )
        .unwrap();
    assert!(y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-3);
}

#[test]
fn a_six_channel_model_takes_the_output_as_it_is() {
    let (_, vars) = build(config(6, 32));
    let report = load_guided_diffusion(&golden("guided_diffusion_small.pt"), &vars).unwrap();
    assert!(!report.eps_half_of_learned_sigma);
    let out = &vars.iter().find(|(k, _)| k == "out.2.weight").unwrap().1;
    assert_eq!(out.dims(), &[6, 32, 3, 3]);
}

#[test]
fn another_architecture_is_refused_naming_keys_and_changing_nothing() {
    let (_, vars) = build(config(3, 64));
    let before: Vec<f64> = vars.iter().map(|(_, v)| sum(v)).collect();
    let err = load_guided_diffusion(&golden("guided_diffusion_small.pt"), &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("141 shapes differ")
            && err.contains("input_blocks.0.0.weight: checkpoint [32, 3, 3, 3], model [64, 3, 3, 3]"),
        "{err}"
    );
    assert!(
        err.contains("not a guided-diffusion UNet of this preset's architecture"),
        "{err}"
    );
    let after: Vec<f64> = vars.iter().map(|(_, v)| sum(v)).collect();
    assert_eq!(before, after);
}

#[test]
fn files_that_are_not_torch_checkpoints_say_so() {
    let (_, vars) = build(config(3, 32));
    let err = load_guided_diffusion(&golden("guided_diffusion_small.json"), &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("guided_diffusion_small.json") && err.contains("not a PyTorch zip checkpoint"),
        "{err}"
    );
    let err = load_guided_diffusion(&golden("no_such.pt"), &vars)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no_such.pt"), "{err}");
}
