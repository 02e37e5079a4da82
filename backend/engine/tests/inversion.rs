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

/// A DCGAN inquiry carries the latent it was drawn from: the shipped latent generator adopts it
/// (m = 1 can then reach the inquiry itself, not the ≈ 0.77 an inversion reaches) and refuses a
/// latent that draws someone else, so a caller falls back to inverting the face; with this
/// inquiry, `sample_final` gives `sample`'s images without decoding every step.
#[test]
fn a_dcgan_inquiry_s_own_latent_is_adopted_and_sampling_decodes_only_what_is_asked() {
    use cemiface_engine::diffusion::generator::{Generator, KNOWN_LATENT_MIN};
    let Some(assets) = common::assets_with(&[
        "gan-face-generate/weights.tar",
        "face-api/face_recognition_model-weights_manifest.json",
    ]) else {
        return;
    };
    let dev = Device::Cpu;
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/latent-dcgan");
    let gen = Generator::load(&shipped, false, &assets, &dev).unwrap();
    let gan = gen.decoder().expect("a latent model has a decoder");
    let z = gan.latents(2, &mut NoiseRng::new(11)).unwrap();
    let faces = gan.generate(&z).unwrap();
    let own = z.narrow(0, 0, 1).unwrap();
    let foreign = z.narrow(0, 1, 1).unwrap();
    let face = faces.narrow(0, 0, 1).unwrap();
    let c_id = l2_normalize(&gen.encoder().descriptors(&face).unwrap()).unwrap();

    let refused = gen.adopt_inquiry_latent(&c_id, &foreign).unwrap().unwrap();
    assert!(
        refused < KNOWN_LATENT_MIN,
        "another face's latent scored {refused}"
    );
    let adopted = gen.adopt_inquiry_latent(&c_id, &own).unwrap().unwrap();
    assert!(adopted > 0.999, "G(z) against its own C_id: {adopted}");
    // Cached: the generator now conditions this identity on z itself, with no inversion.
    let (za, reached) = gen.inquiry_latent(&c_id).unwrap().unwrap();
    let diff: f32 = (za - &own)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!((diff, reached), (0.0, adopted));
    // `sample_final` decodes once at the end: the same images as `sample`, which decodes every
    // step for previews.
    let (m, seeds) = ([0.0f32, 1.0], [5u64, 5]);
    let mut shapes = (Vec::new(), Vec::new());
    let with_previews = gen
        .sample(&c_id, &m, &seeds, 3, 1.0, |s| {
            shapes.0.push(s.x0.dims().to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let final_only = gen
        .sample_final(&c_id, &m, &seeds, 3, 1.0, |s| {
            shapes.1.push(s.x0.dims().to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    let diff: f32 = (with_previews - final_only)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
    assert_eq!(
        shapes.0,
        vec![vec![2, 3, 64, 64]; 3],
        "previews are decoded faces"
    );
    assert_eq!(shapes.1, vec![vec![2, 100, 1, 1]; 3], "no decoding per step");
    // A latent of the wrong width is a clear error.
    let err = gen
        .adopt_inquiry_latent(
            &c_id,
            &Tensor::zeros((1, 64), candle_core::DType::F32, &dev).unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("100 values"), "{err}");
}
