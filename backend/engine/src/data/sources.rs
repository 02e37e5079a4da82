//! Label-free training faces for the generator: the DCGAN stream (filtered) or image folders.
//! Every source yields (B, 3, S, S) RGB batches in [−1, 1] at the model's size, drawing all its
//! randomness from the trainer's `NoiseRng` so runs are reproducible and resumable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::data::dcgan::{mean_luma, Dcgan};
use crate::data::image_io::{self, ImageLimits};
use crate::face::align::FaceAligner;
use crate::identity::encoder::{cosine_rows, IdentityEncoder};
use crate::noise::NoiseRng;
use crate::{Error, Result};

/// A stream of training faces.
pub trait FaceSource: Send {
    fn next_batch(&mut self, n: usize, rng: &mut NoiseRng) -> Result<Tensor>;
    fn describe(&self) -> String;
}

/// Brings a (B, 3, H, H) batch to (B, 3, size, size): average pooling for integer shrink factors,
/// nearest-neighbour otherwise.
pub fn fit_size(x: &Tensor, size: usize) -> Result<Tensor> {
    let h = x.dim(2)?;
    Ok(if h == size {
        x.clone()
    } else if h > size && h % size == 0 {
        x.avg_pool2d(h / size)?
    } else {
        x.interpolate2d(size, size)?
    })
}

/// The DCGAN stream with DCGAN-specific filters: very dark samples (mean luma below `min_luma`),
/// broken ones (identity of the sample and its mirror image disagree: cosine below `min_flip_cos`)
/// and, with [`DcganSource::with_detector`], samples in which the face detector finds no face.
pub struct DcganSource {
    gan: Dcgan,
    size: usize,
    min_luma: f32,
    min_flip_cos: f32,
    encoder: Option<Arc<dyn IdentityEncoder>>,
    detector: Option<FaceAligner>,
    /// Samples drawn and kept so far, for reporting the filter rate.
    pub drawn: u64,
    pub kept: u64,
}

impl DcganSource {
    pub fn new(
        gan: Dcgan,
        size: usize,
        min_luma: f32,
        min_flip_cos: f32,
        encoder: Option<Arc<dyn IdentityEncoder>>,
    ) -> Self {
        Self {
            gan,
            size,
            min_luma,
            min_flip_cos,
            encoder,
            detector: None,
            drawn: 0,
            kept: 0,
        }
    }

    /// Keeps only samples in which `detector` finds a face (`FaceAligner::finds_face`).
    pub fn with_detector(mut self, detector: FaceAligner) -> Self {
        self.detector = Some(detector);
        self
    }
}

impl DcganSource {
    /// [`FaceSource::next_batch`] with the latents the faces were drawn from: ((n, 3, S, S), (n, 100)).
    pub fn next_batch_with_latents(&mut self, n: usize, rng: &mut NoiseRng) -> Result<(Tensor, Tensor)> {
        let mut kept: Vec<Tensor> = Vec::new();
        let mut latents: Vec<Tensor> = Vec::new();
        let mut count = 0;
        for _ in 0..64 {
            let z = self.gan.latents(n, rng)?;
            let x = self.gan.generate(&z)?;
            let luma: Vec<f32> = mean_luma(&x)?.to_vec1()?;
            let flip: Vec<f32> = match &self.encoder {
                Some(enc) if self.min_flip_cos > -1.0 => {
                    cosine_rows(&enc.descriptors(&x)?, &enc.descriptors(&x.flip(&[3])?)?)?.to_vec1()?
                }
                _ => vec![1.0; n],
            };
            self.drawn += n as u64;
            for i in 0..n {
                if luma[i] >= self.min_luma && flip[i] >= self.min_flip_cos && count < n {
                    if let Some(det) = &self.detector {
                        if !det.finds_face(&tensor_image(&x.get(i)?)?)? {
                            continue;
                        }
                    }
                    kept.push(x.narrow(0, i, 1)?);
                    latents.push(z.narrow(0, i, 1)?);
                    count += 1;
                }
            }
            if count == n {
                self.kept += n as u64;
                return Ok((
                    fit_size(&Tensor::cat(&kept, 0)?, self.size)?,
                    Tensor::cat(&latents, 0)?,
                ));
            }
        }
        Err(Error::Config(format!(
            "the DCGAN filter keeps almost nothing (min_luma {}, min_flip_cos {}): loosen it",
            self.min_luma, self.min_flip_cos
        )))
    }
}

impl FaceSource for DcganSource {
    fn next_batch(&mut self, n: usize, rng: &mut NoiseRng) -> Result<Tensor> {
        Ok(self.next_batch_with_latents(n, rng)?.0)
    }

    fn describe(&self) -> String {
        format!("DCGAN stream (kept {} of {} samples)", self.kept, self.drawn)
    }
}

/// Every JPEG/PNG/WebP under a folder (any depth), resized to the model's size, drawn uniformly.
pub struct ImageFolderSource {
    files: Vec<PathBuf>,
    size: usize,
    device: Device,
}

impl ImageFolderSource {
    pub fn new(root: &Path, size: usize, device: &Device) -> Result<Self> {
        let mut files = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let p = entry.map_err(|e| Error::io(&dir, e))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if image_io::is_image_path(&p) {
                    files.push(p);
                }
            }
        }
        if files.is_empty() {
            return Err(Error::Config(format!(
                "{}: no JPEG, PNG or WebP images found",
                root.display()
            )));
        }
        files.sort();
        Ok(Self {
            files,
            size,
            device: device.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Images of an insightface RecordIO set (`x.rec` + `x.idx`), header records skipped.
pub struct RecordioSource {
    reader: crate::data::recordio::RecordReader,
    keys: Vec<u64>,
    size: usize,
    device: Device,
}

impl RecordioSource {
    pub fn new(rec: &Path, size: usize, device: &Device) -> Result<Self> {
        let mut reader = crate::data::recordio::RecordReader::open(rec)?;
        let keys = reader.image_keys()?;
        if keys.is_empty() {
            return Err(Error::Config(format!("{}: no image records", rec.display())));
        }
        Ok(Self {
            reader,
            keys,
            size,
            device: device.clone(),
        })
    }
}

impl FaceSource for RecordioSource {
    fn next_batch(&mut self, n: usize, rng: &mut NoiseRng) -> Result<Tensor> {
        let batch = (0..n)
            .map(|_| {
                let key = self.keys[(rng.next_u32() as usize) % self.keys.len()];
                let rec = self.reader.read(key)?;
                let img = image_io::decode(&rec.image, &format!("record {key}"), ImageLimits::default())?;
                image_tensor(&img, self.size, &self.device)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&batch, 0)?)
    }

    fn describe(&self) -> String {
        format!("{} RecordIO images", self.keys.len())
    }
}

/// An RGB image as a (1, 3, size, size) tensor in [−1, 1].
pub fn image_tensor(img: &image::RgbImage, size: usize, device: &Device) -> Result<Tensor> {
    let img = if img.width() as usize == size && img.height() as usize == size {
        img.clone()
    } else {
        image::imageops::resize(
            img,
            size as u32,
            size as u32,
            image::imageops::FilterType::Triangle,
        )
    };
    let chw: Vec<f32> = (0..3)
        .flat_map(|c| img.pixels().map(move |p| p[c] as f32 / 127.5 - 1.0))
        .collect();
    Ok(Tensor::from_vec(chw, (1, 3, size, size), device)?)
}

/// A (3, H, W) tensor in [−1, 1] as an RGB image (clamped, rounded).
pub fn tensor_image(x: &Tensor) -> Result<image::RgbImage> {
    let (_, h, w) = x.dims3()?;
    let v: Vec<f32> = x
        .affine(127.5, 127.5)?
        .clamp(0f32, 255f32)?
        .flatten_all()?
        .to_vec1()?;
    Ok(image::RgbImage::from_fn(w as u32, h as u32, |px, py| {
        let i = py as usize * w + px as usize;
        image::Rgb([0, 1, 2].map(|c| v[c * h * w + i].round() as u8))
    }))
}

impl FaceSource for ImageFolderSource {
    fn next_batch(&mut self, n: usize, rng: &mut NoiseRng) -> Result<Tensor> {
        let batch = (0..n)
            .map(|_| {
                let i = (rng.next_u32() as usize) % self.files.len();
                image_tensor(
                    &image_io::read(&self.files[i], ImageLimits::default())?,
                    self.size,
                    &self.device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&batch, 0)?)
    }

    fn describe(&self) -> String {
        format!("{} images", self.files.len())
    }
}
