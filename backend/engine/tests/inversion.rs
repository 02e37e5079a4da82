//! The latent inversion (`diffusion::latent::inversion`): from a far start, the pixel term finds a
//! DCGAN face's own latent region, where the identity term alone settles on another face that only
//! scores alike.

mod common;

use candle_core::{Device, Tensor};
use cemiface_engine::data::dcgan::Dcgan;
use cemiface_engine::diffusion::latent::config::InversionConfig;
use cemiface_engine::diffusion::latent::inversion::invert;
use cemiface_engine::identity::encoder::{cosine_rows, l2_normalize, DlibEncoder, IdentityEncoder};
use cemiface_engine::noise::NoiseRng;

fn pixel_mse(a: &Tensor, b: &Tensor) -> Vec<f32> {
    (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .mean(1)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_pixel_term_makes_the_inversion_look_like_the_face() {
    let Some(assets) = common::assets_with(&[
        "gan-face-generate/weights.tar",
        "face-api/face_recognition_model-weights_manifest.json",
    ]) else {
        return;
    };
    let dev = Device::Cpu;
    let gan = Dcgan::load(&assets.join("gan-face-generate/weights.tar"), &dev).unwrap();
    let enc = DlibEncoder::load(&assets, &dev).unwrap();
    let mut rng = NoiseRng::new(3);
    let z_true = rng.randn(&[2, 100], &dev).unwrap();
    let start = rng.randn(&[2, 100], &dev).unwrap();
    let face = gan.generate(&z_true).unwrap();
    let c = l2_normalize(&enc.descriptors(&face).unwrap()).unwrap();
    let cfg = |pixel| InversionConfig {
        steps: 60,
        lr: 0.05,
        prior: 0.01,
        pixel,
    };
    let with = invert(&gan, &enc, &c, Some(&face), &start, &cfg(4.0)).unwrap();
    let without = invert(&gan, &enc, &c, Some(&face), &start, &cfg(0.0)).unwrap();
    let (mse_with, mse_without) = (
        pixel_mse(&gan.generate(&with.z).unwrap(), &face),
        pixel_mse(&gan.generate(&without.z).unwrap(), &face),
    );
    let before = pixel_mse(&gan.generate(&start).unwrap(), &face);
    eprintln!("pixel MSE: start {before:?}, identity only {mse_without:?}, with pixels {mse_with:?}");
    eprintln!(
        "similarity: identity only {:?}, with pixels {:?}",
        without.similarity, with.similarity
    );
    let start_sim: Vec<f32> = cosine_rows(&enc.descriptors(&gan.generate(&start).unwrap()).unwrap(), &c)
        .unwrap()
        .to_vec1()
        .unwrap();
    for i in 0..2 {
        assert!(
            mse_with[i] < 0.5 * mse_without[i] && mse_with[i] < 0.5 * before[i],
            "row {i}"
        );
        // The identity term still pulls: closer to the face's identity than the start was.
        assert!(
            with.similarity[i] > start_sim[i],
            "row {i}: {} vs start {}",
            with.similarity[i],
            start_sim[i]
        );
    }
    let reached: Vec<f32> = cosine_rows(&enc.descriptors(&gan.generate(&with.z).unwrap()).unwrap(), &c)
        .unwrap()
        .to_vec1()
        .unwrap();
    for (r, s) in reached.iter().zip(&with.similarity) {
        assert!((r - s).abs() < 1e-4, "reported {s}, measured {r}");
    }
}
