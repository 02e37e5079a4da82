//! The independent judge: MobileFace's tfjs graph run by the engine's interpreter equals an
//! independent numpy interpreter (`scripts/reference/mobileface_golden.py` →
//! `tests/golden/mobileface.json`), and it tells the same person from another on real photos.

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cemiface_engine::data::image_io;
use cemiface_engine::data::sources::image_tensor;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::encoder::{cosine_matrix, IdentityEncoder};
use cemiface_engine::identity::mobileface::MobileFace;

fn assets() -> Option<PathBuf> {
    common::assets_with(&[cemiface_engine::identity::mobileface::MODEL_PATH, "face-api"])
}

/// The two input patterns of the golden script, in raw 0..255, as NCHW.
fn patterns() -> Tensor {
    let mut v = vec![0f32; 2 * 3 * 112 * 112];
    for c in 0..3 {
        for y in 0..112 {
            for x in 0..112 {
                let i = (c * 112 + y) * 112 + x;
                v[i] = ((x * 3 + y * 5 + c * 50) % 256) as f32;
                let s = (0.1 * x as f64 + 0.07 * y as f64 + c as f64).sin();
                v[3 * 112 * 112 + i] = (127.5 + 100.0 * s) as f32;
            }
        }
    }
    Tensor::from_vec(v, (2, 3, 112, 112), &Device::Cpu).unwrap()
}

#[test]
fn graph_interpreter_matches_the_numpy_reference() {
    let Some(dir) = assets() else { return };
    let judge = MobileFace::load(&dir, &Device::Cpu).unwrap();
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/mobileface.json")).unwrap();
    assert_eq!(golden["output"], "batchnorm0/add_1");
    let want: Vec<Vec<f32>> = serde_json::from_value(golden["descriptors"].clone()).unwrap();
    // The judge takes images in [−1, 1]; it maps them back to raw 0..255 itself.
    let x = ((patterns() / 127.5).unwrap() - 1.0).unwrap();
    let got = judge.descriptors(&x).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), 256);
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-3 * scale, "max error {err} (scale {scale})");
    }
}

#[test]
fn the_judge_scores_the_same_person_above_another() {
    let Some(dir) = assets() else { return };
    let dev = Device::Cpu;
    let aligner = FaceAligner::load(&dir, &dev).unwrap();
    let judge = MobileFace::load(&dir, &dev).unwrap();
    let crops: Vec<Tensor> = ["obama.jpg", "obama2.jpg", "biden.jpg"]
        .iter()
        .map(|n| {
            let img = image_io::read(&dir.join("face_recognition").join(n), Default::default()).unwrap();
            image_tensor(&aligner.align(&img, n).unwrap().arcface, 112, &dev).unwrap()
        })
        .collect();
    let e = judge.descriptors(&Tensor::cat(&crops, 0).unwrap()).unwrap();
    let c = cosine_matrix(&e, &e).unwrap().to_vec2::<f32>().unwrap();
    let (same, other) = (c[0][1], c[0][2].max(c[1][2]));
    assert!(
        same > other + 0.15,
        "Obama–Obama {same:.3} vs Obama–Biden {other:.3}"
    );
    // At 64×64 (the demo generator's size) the judge still separates them.
    let small: Vec<Tensor> = crops.iter().map(|t| t.interpolate2d(64, 64).unwrap()).collect();
    let e = judge.descriptors(&Tensor::cat(&small, 0).unwrap()).unwrap();
    let c = cosine_matrix(&e, &e).unwrap().to_vec2::<f32>().unwrap();
    assert!(c[0][1] > c[0][2].max(c[1][2]), "at 64×64: {c:?}");
}
