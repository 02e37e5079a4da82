//! The latent preset's reference bank with `bank.faces` and `bank.toward = "anchors"`
//! (`diffusion::latent::bank`): anchors are faces the detector finds, and every teacher lies between
//! its anchor and another anchor, odd teachers' partners among the least similar ones.

mod common;

use candle_core::Device;
use cemiface_engine::data::dcgan::Dcgan;
use cemiface_engine::data::sources::tensor_image;
use cemiface_engine::diffusion::latent::bank::Bank;
use cemiface_engine::diffusion::latent::config::LatentConfig;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::encoder::DlibEncoder;

fn config() -> LatentConfig {
    // configs/latent-dcgan.toml with a bank of 8 anchors × 4 teachers.
    serde_json::from_value(serde_json::json!({
        "denoiser": {"latent_dim": 100, "id_dim": 128, "hidden": 32, "blocks": 1, "emb_dim": 16,
                     "prediction": "x0_residual"},
        "optimizer": {"lr": 0.0005, "weight_decay": 0.0, "grad_clip": 1.0},
        "train": {"batch_size": 8, "sim_mat_batch": 2, "steps": 1, "lambda": 0.05, "m_step": 0.04,
                  "ema_max_decay": 0.999, "checkpoint_every": 1, "seed": 0, "x0_clip": 4.0},
        "bank": {"anchors": 8, "mixes": 4, "max_angle": 1.0, "min_luma": 0.2, "min_flip_cos": 0.95,
                 "faces": true, "toward": "anchors",
                 "dissimilar": 0.3}, // the 3 least similar of the 7 other anchors
        "inversion": {"steps": 1, "lr": 0.05, "prior": 0.01},
        "encoder": {"kind": "dlib"}
    }))
    .unwrap()
}

/// The DCGAN, dlib and the face detector on the CPU; None when the assets are missing (and
/// `CEMIFACE_SKIP_MISSING_ASSETS` allows it).
fn models() -> Option<(Dcgan, DlibEncoder, FaceAligner)> {
    let assets = common::assets_with(&[
        "gan-face-generate/weights.tar",
        "face-api/face_recognition_model-weights_manifest.json",
        "face-api/tiny_face_detector_model-weights_manifest.json",
    ])?;
    let dev = Device::Cpu;
    Some((
        Dcgan::load(&assets.join("gan-face-generate/weights.tar"), &dev).unwrap(),
        DlibEncoder::load(&assets, &dev).unwrap(),
        FaceAligner::load(&assets, &dev).unwrap(),
    ))
}

/// Best fit of `t` as a·z_a + b·z_o: (a, residual relative to ‖t‖).
fn plane_fit(t: &[f32], za: &[f32], zo: &[f32]) -> (f32, f32) {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
    let (aa, ab, bb, ta, tb) = (dot(za, za), dot(za, zo), dot(zo, zo), dot(t, za), dot(t, zo));
    let det = aa * bb - ab * ab;
    let (ca, cb) = ((ta * bb - tb * ab) / det, (tb * aa - ta * ab) / det);
    let r: Vec<f32> = (0..t.len()).map(|i| t[i] - ca * za[i] - cb * zo[i]).collect();
    (ca, (dot(&r, &r) / dot(t, t)).sqrt())
}

fn plane_residual(t: &[f32], za: &[f32], zo: &[f32]) -> f32 {
    plane_fit(t, za, zo).1
}

#[test]
fn anchors_are_detected_faces_and_teachers_run_between_anchors() {
    let Some((gan, enc, det)) = models() else { return };
    let dev = Device::Cpu;
    let cfg = config();
    let dir = std::env::temp_dir().join(format!("cemiface-bank-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Without the detector the filter cannot run: a clear error, nothing built.
    let err = Bank::load_or_build(&cfg, &gan, &enc, None, &dir, &dev, |_, _| {})
        .err()
        .expect("bank.faces without a detector is an error")
        .to_string();
    assert!(err.contains("bank.faces"), "{err}");
    let bank = Bank::load_or_build(&cfg, &gan, &enc, Some(&det), &dir, &dev, |_, _| {}).unwrap();
    assert_eq!(bank.anchors(), 8);
    let x = gan.generate(&bank.anchor_z).unwrap();
    for a in 0..8 {
        assert!(
            det.finds_face(&tensor_image(&x.get(a).unwrap()).unwrap())
                .unwrap(),
            "anchor {a} is not a face the detector finds"
        );
    }
    let z: Vec<Vec<f32>> = bank.anchor_z.to_vec2().unwrap();
    let c = bank.anchor_c().unwrap();
    let sim: Vec<Vec<f32>> = c.matmul(&c.t().unwrap()).unwrap().to_vec2().unwrap();
    let teachers: Vec<Vec<f32>> = bank.mix_z.to_vec2().unwrap();
    for a in 0..8 {
        let mut others: Vec<usize> = (0..8).filter(|&o| o != a).collect();
        others.sort_by(|&x, &y| sim[a][x].total_cmp(&sim[a][y]));
        for j in 1..4 {
            let t = &teachers[a * 4 + j];
            let partner = others
                .iter()
                .copied()
                .min_by(|&p, &q| plane_residual(t, &z[a], &z[p]).total_cmp(&plane_residual(t, &z[a], &z[q])))
                .unwrap();
            let res = plane_residual(t, &z[a], &z[partner]);
            assert!(
                res < 1e-4,
                "anchor {a} teacher {j}: off every anchor plane ({res})"
            );
            if j % 2 == 1 {
                assert!(
                    others[..3].contains(&partner),
                    "anchor {a} teacher {j}: partner {partner} is not among the least similar {:?}",
                    &others[..3]
                );
            }
        }
        assert_eq!(bank.mix_s[a * 4], 1.0);
    }
    // The cache is reused with the same settings (the detector is not needed to read it).
    let again = Bank::load_or_build(&cfg, &gan, &enc, None, &dir, &dev, |_, _| {});
    assert!(again.is_ok(), "a cached bank reads without the detector");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn teacher_faces_draws_again_only_the_teachers_the_detector_misses() {
    let Some((gan, enc, det)) = models() else { return };
    let dev = Device::Cpu;
    let k = 8;
    let build = |teacher_faces: bool| {
        let mut cfg = config();
        cfg.bank.mixes = k;
        cfg.bank.teacher_faces = teacher_faces;
        let dir = std::env::temp_dir().join(format!(
            "cemiface-bank-tf{}-{}",
            teacher_faces as u8,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if teacher_faces {
            let err = Bank::load_or_build(&cfg, &gan, &enc, None, &dir, &dev, |_, _| {})
                .err()
                .expect("bank.teacher_faces without a detector is an error")
                .to_string();
            assert!(err.contains("bank.teacher_faces"), "{err}");
        }
        let bank = Bank::load_or_build(&cfg, &gan, &enc, Some(&det), &dir, &dev, |_, _| {}).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        bank
    };
    let (plain, faces) = (build(false), build(true));
    let is_face = |z: &candle_core::Tensor| -> Vec<bool> {
        let x = gan.generate(z).unwrap();
        (0..z.dim(0).unwrap())
            .map(|i| {
                det.finds_face(&tensor_image(&x.get(i).unwrap()).unwrap())
                    .unwrap()
            })
            .collect()
    };
    let (face_a, face_b) = (is_face(&plain.mix_z), is_face(&faces.mix_z));
    let rows = |t: &candle_core::Tensor| -> Vec<Vec<f32>> { t.to_vec2().unwrap() };
    let (za, a_rows, b_rows) = (rows(&plain.anchor_z), rows(&plain.mix_z), rows(&faces.mix_z));
    assert_eq!(za, rows(&faces.anchor_z), "same anchors");
    let missed = face_a.iter().filter(|f| !**f).count();
    assert!(
        missed > 0,
        "this seed's plain bank has teachers the detector misses"
    );
    let mut redrawn = 0;
    for r in 0..a_rows.len() {
        if face_a[r] || r % k == 0 {
            assert_eq!(
                a_rows[r], b_rows[r],
                "teacher {r} was a face and must stay as drawn"
            );
            assert_eq!(plain.mix_s[r], faces.mix_s[r]);
        } else if a_rows[r] != b_rows[r] {
            redrawn += 1;
            assert!(face_b[r], "teacher {r} was drawn again but is no face");
            // Same anchor, same θ (the z_a coefficient), a new partner among the anchors.
            let a = r / k;
            let best = |row: &[f32]| {
                (0..za.len())
                    .filter(|&o| o != a)
                    .map(|o| plane_fit(row, &za[a], &za[o]))
                    .min_by(|p, q| p.1.total_cmp(&q.1))
                    .unwrap()
            };
            let ((ca, _), (cb, res)) = (best(&a_rows[r]), best(&b_rows[r]));
            assert!(res < 1e-4, "teacher {r} off every anchor plane ({res})");
            assert!((ca - cb).abs() < 1e-3, "teacher {r}: θ changed ({ca} → {cb})");
        }
    }
    let missed_b = face_b.iter().filter(|f| !**f).count();
    assert!(
        redrawn > 0 && missed_b == missed - redrawn,
        "missed {missed}, redrawn {redrawn}, still missed {missed_b}"
    );
}
