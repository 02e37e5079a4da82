//! Training-face sources: image folders and insightface RecordIO sets.

use std::io::Cursor;

use candle_core::Device;
use cemiface_engine::data::recordio::RecordWriter;
use cemiface_engine::data::sources::{FaceSource, ImageFolderSource, RecordioSource};
use cemiface_engine::noise::NoiseRng;

fn png(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(40, 40, image::Rgb([shade, 0, 255 - shade]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cemiface-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn recordio_sets_yield_resized_batches_in_range() {
    let dir = tmp("rec");
    let rec = dir.join("train.rec");
    let mut w = RecordWriter::create(&rec).unwrap();
    w.write(0, 0.0, &[3.0, 2.0], b"").unwrap();
    for k in 1..=2u64 {
        w.write(k, k as f32, &[], &png(k as u8 * 100)).unwrap();
    }
    drop(w);
    let mut src = RecordioSource::new(&rec, 32, &Device::Cpu).unwrap();
    assert!(src.describe().starts_with("2 RecordIO images"));
    let x = src.next_batch(3, &mut NoiseRng::new(0)).unwrap();
    assert_eq!(x.dims(), &[3, 3, 32, 32]);
    let (lo, hi) = (
        x.min_all().unwrap().to_scalar::<f32>().unwrap(),
        x.max_all().unwrap().to_scalar::<f32>().unwrap(),
    );
    assert!((-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi) && hi - lo > 1.0);
}

#[test]
fn folders_are_walked_at_any_depth_and_empty_ones_are_refused() {
    let dir = tmp("folder");
    std::fs::create_dir_all(dir.join("id1/sub")).unwrap();
    std::fs::write(dir.join("id1/a.png"), png(10)).unwrap();
    std::fs::write(dir.join("id1/sub/b.PNG"), png(200)).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let mut src = ImageFolderSource::new(&dir, 16, &Device::Cpu).unwrap();
    assert_eq!(src.len(), 2);
    assert_eq!(
        src.next_batch(4, &mut NoiseRng::new(1)).unwrap().dims(),
        &[4, 3, 16, 16]
    );
    let empty = tmp("empty");
    let err = ImageFolderSource::new(&empty, 16, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no JPEG, PNG or WebP images"), "{err}");
}
