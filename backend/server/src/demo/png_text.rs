//! The settings that made a demo result, embedded in its PNG as a `tEXt` chunk with the keyword
//! `parameters` — where AUTOMATIC1111's web UI (and tools that read its files: ComfyUI, InvokeAI's
//! import, `exiftool`, PNG Info tabs) look for them — so a downloaded image says how to reproduce it.
//!
//! The chunk goes right after `IHDR` (PNG spec §5.6 allows `tEXt` anywhere before `IEND`).

use cemiface_app::demo_protocol::{JobRequest, ModelInfo};

/// The PNG keyword (A1111's).
pub const KEYWORD: &str = "parameters";

/// The A1111-style text: a first line saying what was asked, then `Key: value` pairs.
pub fn parameters(request: &JobRequest, model: &ModelInfo, similarity: &[f32]) -> String {
    let targets = request.targets();
    let list = |v: &[f32]| v.iter().map(|x| format!("{x:+.2}")).collect::<Vec<_>>().join(" ");
    format!(
        "CemiFace: similarity target m = {}\nSteps: {}, Sampler: DDIM, Eta: {}, Seed: {}, Size: {}x{}, \
         Model: {} (step {}), Identity encoder: {}, Achieved similarity: {}",
        list(&targets),
        request.steps,
        request.eta,
        request.seed,
        model.image_size * targets.len() as u32,
        model.image_size,
        model.checkpoint,
        model.step,
        model.encoder,
        list(similarity),
    )
}

/// `png` with a `tEXt` chunk `keyword\0text` inserted after `IHDR`. Latin-1 is the chunk's
/// encoding: characters outside it become `?`. Errors when `png` is not a PNG.
pub fn with_text(png: &[u8], keyword: &str, text: &str) -> Result<Vec<u8>, &'static str> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    // Signature, then IHDR: length (13), type, 13 data bytes, CRC.
    let ihdr_end = SIGNATURE.len() + 4 + 4 + 13 + 4;
    if png.len() < ihdr_end || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return Err("not a PNG (no signature and IHDR)");
    }
    let latin1 = |s: &str| -> Vec<u8> {
        s.chars()
            .map(|c| {
                if (c as u32) < 256 && c != '\0' {
                    c as u8
                } else {
                    b'?'
                }
            })
            .collect()
    };
    let mut data = latin1(keyword);
    data.push(0);
    data.extend(latin1(text));
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend((data.len() as u32).to_be_bytes());
    chunk.extend(b"tEXt");
    chunk.extend(&data);
    let crc = crc32fast::hash(&chunk[4..]);
    chunk.extend(crc.to_be_bytes());
    let mut out = Vec::with_capacity(png.len() + chunk.len());
    out.extend(&png[..ihdr_end]);
    out.extend(chunk);
    out.extend(&png[ihdr_end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sweep: bool) -> JobRequest {
        JobRequest {
            upload_id: "u".into(),
            m: 0.5,
            steps: 20,
            seed: 42,
            eta: 1.0,
            sweep,
        }
    }

    fn model() -> ModelInfo {
        ModelInfo {
            image_size: 64,
            encoder: "dlib-resnet (centred)".into(),
            step: 4000,
            checkpoint: "models/latent-dcgan".into(),
        }
    }

    #[test]
    fn the_text_chunk_reads_back_with_the_png_decoder_and_the_image_is_unchanged() {
        let img = image::RgbImage::from_fn(8, 4, |x, y| image::Rgb([x as u8 * 30, y as u8 * 60, 7]));
        let png = cemiface_engine::synth::generation::encode(
            &img,
            cemiface_engine::synth::generation::ImageFormat::Png,
        )
        .unwrap();
        let text = parameters(&request(false), &model(), &[0.47]);
        let tagged = with_text(&png, KEYWORD, &text).unwrap();

        let decoder = png::Decoder::new(std::io::Cursor::new(&tagged));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let info = reader.info();
        let chunk = info
            .uncompressed_latin1_text
            .iter()
            .find(|t| t.keyword == KEYWORD)
            .expect("a parameters chunk");
        assert_eq!(chunk.text, text);
        assert!(chunk.text.contains("Seed: 42"), "{}", chunk.text);
        assert!(
            chunk.text.contains("Achieved similarity: +0.47"),
            "{}",
            chunk.text
        );
        assert_eq!(buf, img.into_raw(), "pixels unchanged");
    }

    #[test]
    fn a_sweep_lists_every_target_and_the_strip_size() {
        let text = parameters(&request(true), &model(), &[-0.1, 0.0, 0.1, 0.4, 0.8]);
        assert!(
            text.starts_with("CemiFace: similarity target m = -1.00 -0.50 +0.00 +0.50 +1.00\n"),
            "{text}"
        );
        assert!(text.contains("Size: 320x64"), "{text}");
    }

    #[test]
    fn not_a_png_is_refused() {
        assert!(with_text(b"GIF89a........................................", KEYWORD, "x").is_err());
        assert!(with_text(b"", KEYWORD, "x").is_err());
    }
}
