//! From raw photos to dlib descriptors: the face_recognition 1.3.0 photos against dlib's own pipeline
//! (`scripts/reference/dlib_golden.py` → `tests/golden/dlib_photos.json`).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cemiface_engine::align::FaceAligner;
use cemiface_engine::dlib_resnet::DlibResNet;
use cemiface_engine::{image_io, tfjs};

fn assets() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    if dir.join("face_recognition/obama.jpg").exists() && dir.join("face-api").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CEMIFACE_REQUIRE_ASSETS").is_none(),
        "assets missing: run scripts/setup.sh"
    );
    eprintln!("skipped: assets not installed");
    None
}

const PHOTOS: [&str; 4] = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"];

#[test]
fn distances_from_raw_photos_match_dlib() {
    let Some(dir) = assets() else { return };
    let dev = Device::Cpu;
    let aligner = FaceAligner::load(&dir, &dev).unwrap();
    let net = DlibResNet::new(
        tfjs::var_builder(
            &dir.join("face-api/face_recognition_model-weights_manifest.json"),
            &dev,
        )
        .unwrap(),
    )
    .unwrap();
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
