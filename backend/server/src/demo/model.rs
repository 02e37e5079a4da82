//! The models behind the live demo: the generator named in the server's config, its identity
//! network E_id and the face aligner. Everything here is blocking (Candle on the CPU or a GPU)
//! and runs on worker threads, never on the async runtime.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use cemiface_app::demo_protocol::{JobRequest, ModelInfo};
use cemiface_engine::data::sources::{image_tensor, tensor_image};
use cemiface_engine::diffusion::generator::Generator;
use cemiface_engine::face::align::FaceAligner;
use cemiface_engine::identity::encoder::{cosine_rows, l2_normalize, IdentityEncoder};
use cemiface_engine::synth::generation::{encode, ImageFormat};
use image::RgbImage;

/// A face ready to sample from: its aligned crop and identity embedding.
pub struct PreparedFace {
    /// The ArcFace-aligned 112×112 crop, as PNG (re-encoded from pixels: no EXIF survives).
    pub crop_png: Vec<u8>,
    /// What a run is conditioned on.
    pub inquiry: Inquiry,
    /// Faces the detector found; the largest was used.
    pub faces_found: usize,
    /// Share of the face's landmarks outside the photo (`AlignedFace::cut_off`).
    pub cut_off: f64,
}

/// An uploaded identity: C_id = E_id(crop), L2-normalised, (1, D), and the crop at the generator's
/// size (1, 3, S, S), from which a latent model fits the inquiry's latent on the first run (not at
/// upload: the crop is shown at once).
#[derive(Clone)]
pub struct Inquiry {
    pub c_id: Tensor,
    pub face: Tensor,
}

/// One DDIM step as the demo shows it.
pub struct StepPreview {
    /// Steps done, 1-based.
    pub step: u32,
    pub steps: u32,
    pub t: u32,
    /// x̂0 of every image, side by side, as PNG.
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Cosine similarity of each image's x̂0 to the identity under E_id.
    pub similarity: Vec<f32>,
}

/// How a job ended.
pub enum Outcome {
    /// All steps ran; the last preview is the final image.
    Finished { last: StepPreview, sampling_ms: u64 },
    /// The callback stopped it after `steps_done` steps.
    Stopped { steps_done: u32 },
}

/// Generator + E_id + aligner, loaded once per server.
pub struct DemoModel {
    generator: Generator,
    encoder: Arc<dyn IdentityEncoder>,
    aligner: FaceAligner,
    device: Device,
    pub info: ModelInfo,
}

impl DemoModel {
    /// Loads the generator checkpoint (a checkpoint folder or a run folder: its newest checkpoint)
    /// and the assets its E_id and the aligner need.
    pub fn load(checkpoint: &Path, assets_dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let generator = Generator::load(checkpoint, false, assets_dir, device)
            .with_context(|| format!("loading the generator {}", checkpoint.display()))?;
        Self::new(generator, assets_dir, device)
    }

    /// Wraps a loaded generator with its E_id and the aligner from `assets_dir`.
    pub fn new(generator: Generator, assets_dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let encoder = generator.encoder();
        let aligner = FaceAligner::load(assets_dir, device)?;
        let info = ModelInfo {
            image_size: generator.image_size() as u32,
            encoder: encoder.name(),
            step: generator.step,
            checkpoint: generator.dir.display().to_string(),
        };
        Ok(Self {
            generator,
            encoder,
            aligner,
            device: device.clone(),
            info,
        })
    }

    /// The generator.
    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    /// Aligns the largest face of a decoded photo and embeds it. `name` names it in errors.
    pub fn prepare(&self, img: &RgbImage, name: &str) -> cemiface_engine::Result<PreparedFace> {
        let aligned = self.aligner.align(img, name)?;
        let x = image_tensor(&aligned.arcface, self.generator.image_size(), &self.device)?;
        let c_id = l2_normalize(&self.encoder.descriptors(&x)?)?;
        Ok(PreparedFace {
            crop_png: encode(&aligned.arcface, ImageFormat::Png)?,
            inquiry: Inquiry { c_id, face: x },
            faces_found: aligned.faces_found,
            cut_off: aligned.cut_off(img.width(), img.height()),
        })
    }

    /// Runs DDIM for one request (a latent model first fits the inquiry's latent to the face, once
    /// per upload). `on_step` gets every step's preview (x̂0 images, similarity) and may stop the run.
    pub fn run(
        &self,
        inquiry: &Inquiry,
        request: &JobRequest,
        with_similarity: bool,
        mut on_step: impl FnMut(&StepPreview) -> ControlFlow<()>,
    ) -> cemiface_engine::Result<Outcome> {
        let c_id = &inquiry.c_id;
        self.generator.fit_inquiry(c_id, &inquiry.face)?;
        let ms = request.targets();
        let seeds = vec![request.seed; ms.len()];
        let started = Instant::now();
        let mut last: Option<StepPreview> = None;
        let mut failure: Option<cemiface_engine::Error> = None;
        self.generator.sample(
            c_id,
            &ms,
            &seeds,
            request.steps as usize,
            request.eta as f64,
            |s| match self.preview(c_id, s.x0, with_similarity) {
                Ok((png, width, height, similarity)) => {
                    let p = StepPreview {
                        step: s.step as u32 + 1,
                        steps: s.steps as u32,
                        t: s.t as u32,
                        png,
                        width,
                        height,
                        similarity,
                    };
                    let flow = on_step(&p);
                    last = Some(p);
                    flow
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        let sampling_ms = started.elapsed().as_millis() as u64;
        Ok(match last {
            Some(last) if last.step == last.steps => Outcome::Finished { last, sampling_ms },
            other => Outcome::Stopped {
                steps_done: other.map_or(0, |p| p.step),
            },
        })
    }

    /// x̂0 (B, 3, S, S) → a PNG strip, its size, and each image's similarity to `c_id`.
    fn preview(
        &self,
        c_id: &Tensor,
        x0: &Tensor,
        with_similarity: bool,
    ) -> cemiface_engine::Result<(Vec<u8>, u32, u32, Vec<f32>)> {
        let b = x0.dim(0)?;
        let similarity = if with_similarity {
            let target = c_id.broadcast_as((b, c_id.dim(1)?))?.contiguous()?;
            cosine_rows(&self.encoder.descriptors(x0)?, &target)?.to_vec1()?
        } else {
            Vec::new()
        };
        let s = self.generator.image_size() as u32;
        let mut strip = RgbImage::new(s * b as u32, s);
        for i in 0..b {
            image::imageops::replace(&mut strip, &tensor_image(&x0.get(i)?)?, (s * i as u32) as i64, 0);
        }
        Ok((
            encode(&strip, ImageFormat::Png)?,
            strip.width(),
            strip.height(),
            similarity,
        ))
    }
}
