//! The DCGAN port loads the real checkpoint and makes faces the identity network recognises as such.

mod common;

use candle_core::Device;
use cemiface_engine::data::dcgan::{mean_luma, Dcgan};
use cemiface_engine::identity::encoder::{cosine_rows, DlibEncoder, IdentityEncoder};
use cemiface_engine::noise::NoiseRng;

#[test]
fn samples_are_faces_with_flip_consistent_identities() {
    let Some(assets) = common::assets_with(&["gan-face-generate/weights.tar"]) else {
        return;
    };
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

/// With a detector, the DCGAN stream keeps only samples in which it finds a face (the filter behind
/// `bank.faces` and the DCGAN inquiries), and the latents it returns decode to those faces.
#[test]
fn detector_filter_keeps_only_detected_faces() {
    use cemiface_engine::data::sources::{tensor_image, DcganSource};
    use cemiface_engine::face::align::FaceAligner;
    let Some(assets) = common::assets_with(&["gan-face-generate/weights.tar", "face-api"]) else {
        return;
    };
    let dev = Device::Cpu;
    let gan = Dcgan::load(&assets.join("gan-face-generate/weights.tar"), &dev).unwrap();
    let det = FaceAligner::load(&assets, &dev).unwrap();
    let mut stream = DcganSource::new(gan.clone(), 64, 0.2, -1.0, None)
        .with_detector(FaceAligner::load(&assets, &dev).unwrap());
    let (faces, z) = stream.next_batch_with_latents(6, &mut NoiseRng::new(3)).unwrap();
    assert!(
        stream.drawn > stream.kept,
        "the detector rejects some DCGAN samples ({} of {})",
        stream.kept,
        stream.drawn
    );
    let again = gan.generate(&z).unwrap();
    for i in 0..6 {
        let img = tensor_image(&faces.get(i).unwrap()).unwrap();
        assert!(det.finds_face(&img).unwrap(), "sample {i} kept without a face");
        assert_eq!(img, tensor_image(&again.get(i).unwrap()).unwrap());
    }
}

/// DCGAN inquiries with `faces` (what `generate --inquiries dcgan`, `report-control` and the sample
/// grids use) are faces the detector finds, and carry the latent that draws them.
#[test]
fn dcgan_inquiries_are_detected_faces() {
    use cemiface_engine::data::sources::tensor_image;
    use cemiface_engine::face::align::FaceAligner;
    use cemiface_engine::synth::inquiry::{select, InquirySource};
    let Some(assets) = common::assets_with(&["gan-face-generate/weights.tar", "face-api"]) else {
        return;
    };
    let dev = Device::Cpu;
    let weights = assets.join("gan-face-generate/weights.tar");
    let enc = DlibEncoder::load(&assets, &dev).unwrap();
    let det = FaceAligner::load(&assets, &dev).unwrap();
    let gan = Dcgan::load(&weights, &dev).unwrap();
    let source = InquirySource::Dcgan {
        weights,
        faces: Some(assets.clone()),
    };
    let (picked, _) = select(&source, 6, 0.99, &enc, 64, 5, &dev).unwrap();
    assert_eq!(picked.len(), 6);
    for q in &picked {
        let img = q.image.as_ref().unwrap();
        assert!(
            det.finds_face(img).unwrap(),
            "{} is not a face the detector finds",
            q.name
        );
        let z = candle_core::Tensor::new(q.latent.as_ref().unwrap().as_slice(), &dev)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        assert_eq!(
            &tensor_image(&gan.generate(&z).unwrap().get(0).unwrap()).unwrap(),
            img
        );
    }
    // The field is optional in saved specs: an old spec without it still reads.
    let old: InquirySource = serde_json::from_str(r#"{"kind": "dcgan", "weights": "w.tar"}"#).unwrap();
    assert_eq!(
        old,
        InquirySource::Dcgan {
            weights: "w.tar".into(),
            faces: None
        }
    );
}
