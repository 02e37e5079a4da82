//! IResNet against seeded checkpoints written by the Python `safetensors` package with the reference
//! key names, and an independent numpy forward pass (`scripts/reference/iresnet_golden.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cemiface_engine::checkpoint;
use cemiface_engine::recognition::iresnet::{IResNet, IResNetConfig};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn small_insightface() -> IResNetConfig {
    IResNetConfig {
        width: 8,
        embedding_dim: 16,
        ..IResNetConfig::insightface(18)
    }
}

fn small_adaface_se() -> IResNetConfig {
    IResNetConfig {
        width: 16,
        embedding_dim: 16,
        se: true,
        bgr: false,
        ..IResNetConfig::adaface(18)
    }
}

fn max_rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0);
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        / scale
}

fn check_parity(file: &str, cfg: IResNetConfig) {
    let dev = Device::Cpu;
    let tensors = checkpoint::load(&golden(file), None, &dev).unwrap();
    let (x, want) = (tensors["golden.input"].clone(), tensors["golden.output"].clone());
    let net = IResNet::new(cfg, VarBuilder::from_tensors(tensors, DType::F32, &dev)).unwrap();
    let got = net.forward_t(&x, false).unwrap();
    assert_eq!(got.dims(), want.dims());
    let err = max_rel_err(&got, &want);
    assert!(err < 1e-4, "{file}: max relative error {err}");
}

#[test]
fn insightface_ir18_matches_numpy() {
    check_parity("iresnet18_insightface_w8.safetensors", small_insightface());
}

#[test]
fn adaface_ir_se_18_matches_numpy() {
    check_parity("irse18_adaface_w16.safetensors", small_adaface_se());
}

#[test]
fn bgr_checkpoints_see_channels_swapped() {
    let dev = Device::Cpu;
    let path = golden("iresnet18_insightface_w8.safetensors");
    let tensors = checkpoint::load(&path, None, &dev).unwrap();
    let x = tensors["golden.input"].clone();
    let vb = || VarBuilder::from_tensors(tensors.clone(), DType::F32, &dev);
    let rgb = IResNet::new(small_insightface(), vb()).unwrap();
    let bgr = IResNet::new(
        IResNetConfig {
            bgr: true,
            ..small_insightface()
        },
        vb(),
    )
    .unwrap();
    let a = bgr.forward_t(&x, false).unwrap();
    let b = rgb.forward_t(&x.flip(&[1]).unwrap(), false).unwrap();
    assert!(max_rel_err(&a, &b) < 1e-6);
}

#[test]
fn parameter_counts_equal_the_reference_definitions() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("iresnet_params.json")).unwrap()).unwrap();
    let cases = [
        ("insightface_r18", IResNetConfig::insightface(18)),
        ("insightface_r34", IResNetConfig::insightface(34)),
        ("insightface_r50", IResNetConfig::insightface(50)),
        ("insightface_r100", IResNetConfig::insightface(100)),
        ("adaface_ir50", IResNetConfig::adaface(50)),
        ("adaface_ir_se50", IResNetConfig::ir_se_50()),
    ];
    for (name, cfg) in cases {
        let varmap = VarMap::new();
        IResNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
        let data = varmap.data().lock().unwrap();
        let n: usize = data
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, v)| v.elem_count())
            .sum();
        assert_eq!(n as u64, want[name].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn a_missing_key_or_a_wrong_shape_is_named_in_the_error() {
    let dev = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> =
        checkpoint::load(&golden("iresnet18_insightface_w8.safetensors"), None, &dev).unwrap();
    tensors.remove("layer3.1.conv2.weight");
    let err = IResNet::new(
        small_insightface(),
        VarBuilder::from_tensors(tensors, DType::F32, &dev),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("layer3.1.conv2.weight"), "{err}");

    let vb = checkpoint::var_builder(&golden("iresnet18_insightface_w8.safetensors"), None, &dev).unwrap();
    let err = IResNet::new(
        IResNetConfig {
            embedding_dim: 32,
            ..small_insightface()
        },
        vb,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("shape") && err.contains("fc.weight"), "{err}");
}

#[test]
fn wrapper_prefixes_are_stripped_and_the_head_is_left_out() {
    let dev = Device::Cpu;
    let tensors = checkpoint::load(&golden("iresnet18_insightface_w8.safetensors"), None, &dev).unwrap();
    let mut wrapped: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (format!("model.{k}"), v.clone()))
        .collect();
    wrapped.insert(
        "head.kernel".into(),
        Tensor::zeros((16, 10), DType::F32, &dev).unwrap(),
    );
    let path = std::env::temp_dir().join(format!("cemiface-wrapped-{}.safetensors", std::process::id()));
    candle_core::safetensors::save(&wrapped, &path).unwrap();
    let loaded = checkpoint::load(&path, None, &dev).unwrap();
    assert!(loaded.contains_key("layer1.0.conv1.weight") && !loaded.contains_key("head.kernel"));
    IResNet::new(
        small_insightface(),
        VarBuilder::from_tensors(loaded, DType::F32, &dev),
    )
    .unwrap();
}

#[test]
fn the_torch_zip_path_reads_the_real_dcgan_checkpoint() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/gan-face-generate/weights.tar");
    if !path.exists() {
        assert!(
            std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
            "run scripts/setup.sh"
        );
        return;
    }
    let t = checkpoint::load(&path, None, &Device::Cpu).unwrap();
    assert_eq!(t["main.0.weight"].dims(), &[100, 512, 4, 4]);
    assert_eq!(t["main.12.weight"].dims(), &[64, 3, 4, 4]);
    assert_eq!(t["main.10.running_var"].dims(), &[64]);
    assert_eq!(t.keys().filter(|k| k.ends_with(".weight")).count(), 9);
}

#[test]
fn unreadable_checkpoints_say_what_is_wrong() {
    let dev = Device::Cpu;
    let dir = std::env::temp_dir();
    let p = dir.join(format!("cemiface-garbage-{}.pth", std::process::id()));
    std::fs::write(&p, b"not a zip").unwrap();
    let err = checkpoint::load(&p, None, &dev).unwrap_err().to_string();
    assert!(
        err.contains("PyTorch zip checkpoint") && err.contains(".pth"),
        "{err}"
    );
    let p = dir.join(format!("cemiface-garbage-{}.safetensors", std::process::id()));
    std::fs::write(&p, b"\x05\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let err = checkpoint::load(&p, None, &dev).unwrap_err().to_string();
    assert!(err.contains("safetensors"), "{err}");
    let err = checkpoint::load(&dir.join("no-such-file.pt"), None, &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-file.pt"), "{err}");
}
