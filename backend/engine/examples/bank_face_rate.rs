//! The face detector's rate (`FaceAligner::finds_face`, report-control's face rate) on a latent
//! bank's teachers, by their similarity to the anchor: what `bank.teacher_faces` changes
//! (docs/latent-generator.md §5). Seeded sample of `n` teachers, the anchors themselves left out.
//!
//!   cargo run --release -p cemiface-engine --example bank_face_rate <run>/bank.safetensors [n] [assets-dir]

use candle_core::{Device, Tensor};
use cemiface_engine::data::dcgan::Dcgan;
use cemiface_engine::data::sources::tensor_image;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::noise::NoiseRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let args: Vec<String> = std::env::args().collect();
    let Some(bank) = args.get(1) else {
        return Err("usage: bank_face_rate <bank.safetensors> [n] [assets-dir]".into());
    };
    let n: usize = args.get(2).map_or(Ok(400), |s| s.parse())?;
    let assets = std::path::PathBuf::from(args.get(3).map_or("assets", |s| s.as_str()));
    let det = FaceAligner::load(&assets, &dev)?;
    let gan = Dcgan::load(&assets.join("gan-face-generate/weights.tar"), &dev)?;
    let map = candle_core::safetensors::load(bank, &dev)?;
    let (Some(z), Some(s)) = (map.get("mix_z"), map.get("mix_s")) else {
        return Err(format!("{bank}: not a latent bank (no mix_z / mix_s)").into());
    };
    let s: Vec<f32> = s.to_vec1()?;
    let mut rng = NoiseRng::new(11);
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let i = rng.next_u32() as usize % s.len();
        if s[i] < 0.999 {
            rows.push(i as u32);
        }
    }
    // (teachers, faces) per similarity bin of 0.2 over [−1, 1].
    let mut bins = [(0usize, 0usize); 10];
    for chunk in rows.chunks(32) {
        let x = gan.generate(&z.index_select(&Tensor::new(chunk, &dev)?, 0)?)?;
        for (j, &i) in chunk.iter().enumerate() {
            let b = (((s[i as usize] + 1.0) / 0.2) as usize).min(9);
            bins[b].0 += 1;
            bins[b].1 += det.finds_face(&tensor_image(&x.get(j)?)?)? as usize;
        }
    }
    println!("| similarity to the anchor | teachers | face rate |");
    println!("|---|---|---|");
    for (b, (t, f)) in bins.iter().enumerate().filter(|(_, (t, _))| *t > 0) {
        let lo = -1.0 + 0.2 * b as f32;
        println!(
            "| {lo:+.1} … {:+.1} | {t} | {:.2} |",
            lo + 0.2,
            *f as f32 / *t as f32
        );
    }
    let (t, f) = bins.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!("| all | {t} | {:.2} |", f as f32 / t as f32);
    Ok(())
}
