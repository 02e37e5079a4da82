//! How well the face detector (`FaceAligner::face_score`, the score behind `finds_face` and
//! report-control's face rate) tells 64-px DCGAN faces from things that are not faces: seeded raw
//! DCGAN samples against the same samples patch-shuffled (16-px tiles: same colours, no face
//! layout), upside down, and Gaussian noise. Prints the score quantiles and the share above each
//! threshold (docs/latent-generator.md §5, face rate).
//!
//!   cargo run --release -p cemiface-engine --example face_scores [assets-dir]

use candle_core::{Device, Tensor};
use cemiface_engine::data::dcgan::Dcgan;
use cemiface_engine::data::sources::tensor_image;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::noise::NoiseRng;
use image::RgbImage;

/// The image's 16-px tiles in a seeded random order.
fn shuffled(img: &RgbImage, rng: &mut NoiseRng) -> RgbImage {
    let p = 16;
    let n = img.width() / p;
    let mut order: Vec<(f32, u32)> = (0..n * n).map(|i| (rng.normal(), i)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = img.clone();
    for (k, &(_, src)) in order.iter().enumerate() {
        let (sx, sy, dx, dy) = (
            (src % n) * p,
            (src / n) * p,
            (k as u32 % n) * p,
            (k as u32 / n) * p,
        );
        for y in 0..p {
            for x in 0..p {
                out.put_pixel(dx + x, dy + y, *img.get_pixel(sx + x, sy + y));
            }
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let assets = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "assets".into()));
    let det = FaceAligner::load(&assets, &dev)?;
    let gan = Dcgan::load(&assets.join("gan-face-generate/weights.tar"), &dev)?;
    let n = 200;
    let x = gan.sample(n, &mut NoiseRng::new(0xFACE))?;
    let (mut rng, mut noise_rng) = (NoiseRng::new(5), NoiseRng::new(6));
    let (mut faces, mut tiles, mut upside, mut noise) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let img = tensor_image(&x.get(i)?)?;
        faces.push(det.face_score(&img)?);
        tiles.push(det.face_score(&shuffled(&img, &mut rng))?);
        upside.push(det.face_score(&image::imageops::flip_vertical(&img))?);
        if i < 50 {
            let z: Tensor = (noise_rng.randn(&[3, 64, 64], &dev)? * 0.5)?.clamp(-1f32, 1f32)?;
            noise.push(det.face_score(&tensor_image(&z)?)?);
        }
    }
    println!("| images | n | p10 | p50 | p90 | > 0.5 | > 0.3 | > 0.2 | > 0.1 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, v) in [
        ("DCGAN samples", &faces),
        ("patch-shuffled", &tiles),
        ("upside down", &upside),
        ("noise", &noise),
    ] {
        let mut s = v.clone();
        s.sort_by(f32::total_cmp);
        let q = |tenths: usize| s[s.len() * tenths / 10];
        let rate = |t: f32| v.iter().filter(|&&a| a > t).count() as f32 / v.len() as f32;
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            v.len(),
            q(1),
            q(5),
            q(9),
            rate(0.5),
            rate(0.3),
            rate(0.2),
            rate(0.1)
        );
    }
    Ok(())
}
