//! Parity of the Candle dlib ResNet with an independent numpy implementation
//! (`scripts/reference/dlib_resnet_golden.py`, output in `tests/golden/dlib_resnet.json`).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cemiface_engine::identity::dlib_resnet::DlibResNet;
use cemiface_engine::tfjs;

fn manifest() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/face-api/face_recognition_model-weights_manifest.json");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
        "{} missing: run scripts/setup.sh",
        p.display()
    );
    eprintln!("skipped: assets not installed (scripts/setup.sh)");
    None
}

/// The golden script's input, NCHW: (7h + 13w + 29c + 101·seed + ⌊hw/11⌋) mod 256.
fn pattern(seed: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(3 * 150 * 150);
    for c in 0..3 {
        for h in 0..150 {
            for w in 0..150 {
                v.push(((h * 7 + w * 13 + c * 29 + seed * 101 + (h * w) / 11) % 256) as f32);
            }
        }
    }
    v
}

#[test]
fn descriptors_match_the_numpy_reference() {
    let Some(manifest) = manifest() else { return };
    let dev = Device::Cpu;
    let net = DlibResNet::new(tfjs::var_builder(&manifest, &dev).unwrap()).unwrap();
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/dlib_resnet.json")).unwrap();

    let mut batch = pattern(0);
    batch.extend(pattern(1));
    let x = Tensor::from_vec(batch, (2, 3, 150, 150), &dev).unwrap();
    let got = net.forward(&x).unwrap().to_vec2::<f32>().unwrap();
    for (i, row) in got.iter().enumerate() {
        let want: Vec<f64> = golden["descriptors"][i.to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(row.len(), 128);
        let max_err = row
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(max_err < 2e-4, "seed {i}: max |Δ| = {max_err}");
    }
    // The two inputs differ, and so must their descriptors.
    let d: f32 = got[0]
        .iter()
        .zip(&got[1])
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        .sqrt();
    assert!(d > 1e-3, "descriptors of different inputs are equal: {d}");
}

#[test]
fn gradients_flow_back_to_the_input_chip() {
    let Some(manifest) = manifest() else { return };
    let dev = Device::Cpu;
    let net = DlibResNet::new(tfjs::var_builder(&manifest, &dev).unwrap()).unwrap();
    let x = candle_core::Var::from_vec(pattern(0), (1, 3, 150, 150), &dev).unwrap();
    let loss = net
        .forward(x.as_tensor())
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(x.as_tensor()).expect("no gradient for the input");
    let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(norm.is_finite() && norm > 0.0, "gradient norm {norm}");
}

#[test]
fn dequantized_tensors_equal_the_numpy_reference() {
    let Some(manifest) = manifest() else { return };
    let tensors = tfjs::load(&manifest, &Device::Cpu).unwrap();
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/dlib_resnet.json")).unwrap();
    for (name, want) in golden["dequantized"].as_object().unwrap() {
        let want: Vec<f64> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // HWIO as stored: the first values in manifest order, then the sum of all.
        let flat = tensors[name].flatten_all().unwrap();
        let got = flat.narrow(0, 0, 8).unwrap().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want[..8]) {
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "{name}: {g} vs {w}"
            );
        }
        let sum = flat.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!(
            (sum - want[8]).abs() <= 1e-3 * want[8].abs().max(1.0),
            "{name}: sum {sum} vs {}",
            want[8]
        );
    }
}

/// Frozen weights fold the affine into the convolutions once; trainable ones at every forward. Both
/// must give the same descriptors and the same input gradient (random weights: no assets needed).
#[test]
fn frozen_weights_fold_once_and_match_trainable_ones() {
    use candle_nn::{VarBuilder, VarMap};
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let trainable = DlibResNet::new(VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev)).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let frozen = DlibResNet::new(VarBuilder::from_tensors(tensors, candle_core::DType::F32, &dev)).unwrap();
    let mut batch = pattern(2);
    batch.extend(pattern(3));
    let x = candle_core::Var::from_vec(batch, (2, 3, 150, 150), &dev).unwrap();
    let run = |net: &DlibResNet| {
        let y = net.forward(x.as_tensor()).unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), g, grads)
    };
    let (y_t, g_t, grads_t) = run(&trainable);
    let (y_f, g_f, _) = run(&frozen);
    let close = |a: &[f32], b: &[f32], what: &str| {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            err <= 1e-4 * scale,
            "{what}: max |Δ| {err} against max |v| {scale}"
        );
    };
    close(&y_t, &y_f, "descriptors");
    close(&g_t, &g_f, "input gradients");
    // Only the trainable net gives its weights gradients.
    let any_weight = vm.all_vars().into_iter().next().unwrap();
    assert!(grads_t.get(any_weight.as_tensor()).is_some());
}
