//! From raw photos to dlib descriptors: the face_recognition 1.3.0 photos against dlib's own pipeline
//! (`scripts/reference/dlib_golden.py` → `tests/golden/dlib_photos.json`).

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cemiface_engine::data::image_io;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::encoder::DlibEncoder;

fn assets() -> Option<PathBuf> {
    common::assets_with(&["face_recognition/obama.jpg", "face-api"])
}

const PHOTOS: [&str; 4] = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];

fn networks(dir: &std::path::Path) -> (FaceAligner, DlibEncoder) {
    let dev = Device::Cpu;
    (
        FaceAligner::load(dir, &dev).unwrap(),
        DlibEncoder::load(dir, &dev).unwrap(),
    )
}

#[test]
fn distances_from_raw_photos_match_dlib() {
    let Some(dir) = assets() else { return };
    let dev = Device::Cpu;
    let (aligner, enc) = networks(&dir);
    let net = enc.net();
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden/dlib_photos.json")).unwrap();
    let mut desc = Vec::new();
    for name in PHOTOS {
        let img = image_io::read(&dir.join("face_recognition").join(name), Default::default()).unwrap();
        let face = aligner.align(&img, name).unwrap();
        if let Some(out) = std::env::var_os("CEMIFACE_DEBUG_DIR") {
            face.chip
                .save(PathBuf::from(&out).join(format!("chip_{name}.png")))
                .unwrap();
            face.arcface
                .save(PathBuf::from(&out).join(format!("arc_{name}.png")))
                .unwrap();
        }
        let chw: Vec<f32> = (0..3)
            .flat_map(|c| face.chip.pixels().map(move |p| p[c] as f32))
            .collect();
        let x = Tensor::from_vec(chw, (1, 3, 150, 150), &dev).unwrap();
        desc.push(
            net.forward(&x)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
    }
    let l2 = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let mut report = String::new();
    let mut worst = 0f32;
    for i in 0..4 {
        for j in i + 1..4 {
            let key = format!("{}|{}", PHOTOS[i], PHOTOS[j]);
            let want = golden["distances"][&key].as_f64().unwrap() as f32;
            let got = l2(&desc[i], &desc[j]);
            worst = worst.max((got - want).abs());
            report += &format!("{key}: ours {got:.3}, dlib {want:.3}\n");
            let same = PHOTOS[i].starts_with("obama") == PHOTOS[j].starts_with("obama");
            if same {
                assert!(got < 0.55, "{report}same-person pair too far");
            } else {
                assert!(got > 0.65, "{report}different-person pair too close");
            }
        }
    }
    eprintln!("{report}");
    assert!(worst <= 0.08, "{report}largest gap to dlib {worst}");
}

/// Route (b): ArcFace-frame crops (112, and 64 as the demo model makes them) through the fixed
/// resample into dlib's chip still tell Obama from Biden.
#[test]
fn arcface_frame_crops_work_through_the_encoder_interface() {
    use cemiface_engine::identity::encoder::{cosine_matrix, IdentityEncoder};
    let Some(dir) = assets() else { return };
    let dev = Device::Cpu;
    let (aligner, enc) = networks(&dir);
    assert_eq!((enc.name().as_str(), enc.dim()), ("dlib-resnet", 128));
    let mut crops = Vec::new();
    for name in PHOTOS {
        let img = image_io::read(&dir.join("face_recognition").join(name), Default::default()).unwrap();
        let face = aligner.align(&img, name).unwrap();
        crops.extend(
            (0..3)
                .flat_map(|c| face.arcface.pixels().map(move |p| p[c] as f32 / 127.5 - 1.0))
                .collect::<Vec<_>>(),
        );
    }
    let batch = Tensor::from_vec(crops, (4, 3, 112, 112), &dev).unwrap();
    for size in [112usize, 64] {
        let x = if size == 112 {
            batch.clone()
        } else {
            batch.interpolate2d(size, size).unwrap()
        };
        let e = enc.embed(&x).unwrap();
        let raw = e.raw.to_vec2::<f32>().unwrap();
        let l2 = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt()
        };
        let same = [l2(&raw[0], &raw[1]), l2(&raw[0], &raw[2]), l2(&raw[1], &raw[2])];
        let diff = [l2(&raw[0], &raw[3]), l2(&raw[1], &raw[3]), l2(&raw[2], &raw[3])];
        let (max_same, min_diff) = (
            same.iter().copied().fold(0.0, f32::max),
            diff.iter().copied().fold(9.0, f32::min),
        );
        eprintln!("{size}px: same {same:?}, different {diff:?}");
        assert!(
            max_same < min_diff,
            "{size}px: same {same:?} vs different {diff:?}"
        );
        if size == 112 {
            assert!(
                max_same < 0.6 && min_diff > 0.6,
                "{size}px: dlib threshold 0.6 not respected"
            );
        }
        let cos = cosine_matrix(&e.normalized, &e.normalized)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((cos[0][0] - 1.0).abs() < 1e-5 && cos[0][1] > cos[0][3]);
    }
    // Gradients reach the input images (the SimMat loss back-propagates through E_id).
    let x = candle_core::Var::from_tensor(&batch.narrow(0, 0, 1).unwrap()).unwrap();
    let g = enc
        .descriptors(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let norm = g
        .get(x.as_tensor())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm > 0.0 && norm.is_finite());
}

#[test]
fn photos_without_a_usable_face_get_clear_errors() {
    let Some(dir) = assets() else { return };
    let aligner = FaceAligner::load(&dir, &Device::Cpu).unwrap();
    let grey = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let err = aligner.align(&grey, "wall.png").unwrap_err().to_string();
    assert_eq!(err, "wall.png: no face found");

    let obama = image_io::read(&dir.join("face_recognition/obama.jpg"), Default::default()).unwrap();
    let tiny = image::imageops::resize(&obama, 114, 142, image::imageops::FilterType::Triangle);
    let err = aligner.align(&tiny, "tiny.jpg").unwrap_err().to_string();
    assert!(
        err.starts_with("tiny.jpg: the face is too small") && err.contains("at least 40 px"),
        "{err}"
    );
}

#[test]
fn with_several_faces_the_largest_is_used_and_counted() {
    let Some(dir) = assets() else { return };
    let aligner = FaceAligner::load(&dir, &Device::Cpu).unwrap();
    let read = |n: &str| image_io::read(&dir.join("face_recognition").join(n), Default::default()).unwrap();
    let (obama, biden) = (read("obama.jpg"), read("biden.jpg"));
    let small = image::imageops::resize(&biden, 485, 1102, image::imageops::FilterType::Triangle);
    let mut canvas = image::RgbImage::from_pixel(910 + 485, 1137, image::Rgb([0, 0, 0]));
    image::imageops::replace(&mut canvas, &obama, 0, 0);
    image::imageops::replace(&mut canvas, &small, 910, 0);
    let face = aligner.align(&canvas, "group.jpg").unwrap();
    assert!(face.faces_found >= 2, "found {}", face.faces_found);
    assert!(
        face.face.x < 910.0,
        "the larger face (Obama, left) should win: {:?}",
        face.face
    );
}

#[test]
fn missing_models_name_the_file_and_the_fix() {
    let err = FaceAligner::load(std::path::Path::new("/nonexistent-assets"), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tiny_face_detector_model-weights_manifest.json") && err.contains("scripts/setup.sh"),
        "{err}"
    );
}
