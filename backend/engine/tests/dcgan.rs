//! The DCGAN port loads the real checkpoint and makes faces the identity network recognises as such.

use std::path::PathBuf;

use candle_core::Device;
use cemiface_engine::data::dcgan::{mean_luma, Dcgan};
use cemiface_engine::identity::encoder::{cosine_rows, DlibEncoder, IdentityEncoder};
use cemiface_engine::noise::NoiseRng;

#[test]
fn samples_are_faces_with_flip_consistent_identities() {
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    if !assets.join("gan-face-generate/weights.tar").exists() {
        assert!(
            std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
            "run scripts/setup.sh"
        );
        return;
    }
    let dev = Device::Cpu;
    let gan = Dcgan::load(&assets.join("gan-face-generate/weights.tar"), &dev).unwrap();
    let x = gan.sample(16, &mut NoiseRng::new(1)).unwrap();
    assert_eq!(x.dims(), &[16, 3, 64, 64]);
    let (lo, hi) = (
        x.min_all().unwrap().to_scalar::<f32>().unwrap(),
        x.max_all().unwrap().to_scalar::<f32>().unwrap(),
    );
    assert!(lo >= -1.0 && hi <= 1.0 && hi - lo > 1.0, "range {lo}..{hi}");
    // Deterministic per seed.
    let again = gan.sample(16, &mut NoiseRng::new(1)).unwrap();
    assert_eq!(
        (x.clone() - again)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );
    // dlib sees the same identity in a sample and its mirror image far more than across samples.
    let enc = DlibEncoder::load(&assets, &dev).unwrap();
    let a = enc.descriptors(&x).unwrap();
    let b = enc.descriptors(&x.flip(&[3]).unwrap()).unwrap();
    let flip: Vec<f32> = cosine_rows(&a, &b).unwrap().to_vec1().unwrap();
    let other: Vec<f32> = cosine_rows(&a, &a.roll(1, 0).unwrap())
        .unwrap()
        .to_vec1()
        .unwrap();
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    eprintln!(
        "flip cos {:?}\nother cos {:?}\nluma {:?}",
        flip,
        other,
        mean_luma(&x).unwrap().to_vec1::<f32>().unwrap()
    );
    assert!(
        mean(&flip) > mean(&other) + 0.03,
        "flip {} vs other {}",
        mean(&flip),
        mean(&other)
    );
}
