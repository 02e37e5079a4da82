//! Reading photos safely: format sniffing (JPEG, PNG, WebP), size limits, EXIF orientation, and
//! errors that say what is wrong with the file.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::{Error, Result};

/// Limits on what a decoder may allocate; uploads are checked against them before decoding pixels.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Largest accepted side.
    pub max_side: u32,
    /// Largest decoded size in bytes (width × height × bytes per pixel of the file's own colour
    /// type: a 16-bit RGBA image costs 8 bytes a pixel before it is converted).
    pub max_decoded_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            max_side: 16_384,
            max_decoded_bytes: 1 << 30,
        }
    }
}

fn bad(name: &str, message: impl Into<String>) -> Error {
    Error::Format {
        path: name.into(),
        message: message.into(),
    }
}

/// Decodes an image file's bytes to RGB8 with its EXIF orientation applied. `name` is used in errors.
pub fn decode(bytes: &[u8], name: &str, limits: ImageLimits) -> Result<RgbImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(name, format!("cannot read: {e}")))?;
    let Some(format @ (image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP)) =
        reader.format()
    else {
        return Err(bad(name, "not an image (expected JPEG, PNG or WebP)"));
    };
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| bad(name, format!("corrupt image header: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(bad(name, "image has no pixels"));
    }
    if w > limits.max_side || h > limits.max_side || (w as u64) * (h as u64) > limits.max_pixels {
        return Err(bad(
            name,
            format!(
                "image is {w}×{h}; the limit is {} pixels and {} per side",
                limits.max_pixels, limits.max_side
            ),
        ));
    }
    if decoder.total_bytes() > limits.max_decoded_bytes {
        return Err(bad(
            name,
            format!(
                "decoding this {w}×{h} {:?} image would take {} MB; the limit is {} MB",
                decoder.color_type(),
                decoder.total_bytes() >> 20,
                limits.max_decoded_bytes >> 20
            ),
        ));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_scan_ends(bytes) {
        return Err(bad(
            name,
            "truncated JPEG: the image data ends before its end marker",
        ));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| bad(name, format!("truncated or corrupt image data: {e}")))?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}

/// Whether a JPEG's image data is complete: an end-of-image marker (FF D9) after its first
/// start-of-scan (FF DA). Entropy-coded data cannot contain FF D9, and an EXIF thumbnail's own end
/// marker comes before the main scan; bytes appended after the end (motion photos) are fine.
fn jpeg_scan_ends(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Whether a path names an image this crate reads (JPEG, PNG or WebP, by extension).
pub fn is_image_path(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("jpg" | "jpeg" | "png" | "webp")
    )
}

/// Reads and decodes an image file.
pub fn read(path: &Path, limits: ImageLimits) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, &path.display().to_string(), limits)
}

/// Writes an RGB image; the format follows the extension (PNG, JPEG or WebP).
pub fn write(img: &RgbImage, path: &Path) -> Result<()> {
    img.save(path)
        .map_err(|e| bad(&path.display().to_string(), format!("cannot write image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_a_png() {
        let img = decode(&png_bytes(5, 3), "a.png", ImageLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (5, 3));
        assert_eq!(img.get_pixel(4, 2).0, [4, 2, 7]);
    }

    #[test]
    fn text_is_not_an_image() {
        let err = decode(b"hello, I am a text file", "notes.txt", ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("notes.txt: not an image"), "{err}");
    }

    #[test]
    fn a_truncated_file_is_reported_as_such() {
        let bytes = png_bytes(64, 64);
        let err = decode(&bytes[..bytes.len() / 2], "cut.png", ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cut.png") && (err.contains("truncated") || err.contains("corrupt")),
            "{err}"
        );
    }

    #[test]
    fn oversized_images_are_refused_before_decoding() {
        let limits = ImageLimits {
            max_pixels: 100,
            max_side: 1000,
            ..ImageLimits::default()
        };
        let err = decode(&png_bytes(20, 20), "big.png", limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("20×20") && err.contains("limit"), "{err}");
    }

    #[test]
    fn decode_bombs_and_truncated_jpegs_are_refused_before_decoding() {
        // 16-bit RGBA, 2000×2000: 32 MB decoded from a few kB of zeros.
        let mut png = Vec::new();
        image::DynamicImage::ImageRgba16(image::ImageBuffer::new(2000, 2000))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(png.len() < 200_000);
        let limits = ImageLimits {
            max_decoded_bytes: 16 << 20,
            ..ImageLimits::default()
        };
        let err = decode(&png, "bomb.png", limits).unwrap_err().to_string();
        assert!(
            err.contains("would take 30 MB") && err.contains("Rgba16"),
            "{err}"
        );
        // A JPEG cut in its scan data is refused; the whole file decodes.
        let mut jpeg = Vec::new();
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        assert!(decode(&jpeg, "whole.jpg", ImageLimits::default()).is_ok());
        let err = decode(&jpeg[..jpeg.len() - 40], "cut.jpg", ImageLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.jpg") && err.contains("truncated JPEG"), "{err}");
        let mut appended = jpeg.clone();
        appended.extend_from_slice(b"trailing data of a motion photo");
        assert!(decode(&appended, "motion.jpg", ImageLimits::default()).is_ok());
    }
}
