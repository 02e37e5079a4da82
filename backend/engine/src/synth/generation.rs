//! Synthetic data set generation (CemiFace Algorithm 2, docs/paper.md §3.2): for every inquiry identity,
//! N images by DDIM at similarity target m, each from its own noise seed derived from (run seed,
//! identity, index) so any image can be regenerated alone.
//!
//! Layout of an output folder, written so that shards can run in parallel and any run can be
//! killed and resumed without gaps or duplicates:
//! ```text
//! generate.json            the settings (a resume with other settings is refused)
//! inquiries.json           the selected identities and their C_id; inquiries/<id>.png their faces
//! images/<id>/<k>.png      N generated images (+ copies of the inquiry) per identity
//! parts/<id>.jsonl         manifest lines of one identity, written last: it marks the identity done
//! shards/<i>-of-<n>.done   a finished shard
//! manifest.jsonl, report.json, similarity_histogram.png [, train.rec + train.idx]  once all are done
//! ```

use std::io::Cursor;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::sources::{image_tensor, tensor_image};
use crate::diffusion::ddim::StepInfo;
use crate::diffusion::generator::Generator;
use crate::identity::encoder::{cosine_rows, IdentityEncoder};
use crate::noise::NoiseRng;
use crate::synth::inquiry::Inquiry;
use crate::{Error, Result};

/// Image file format of the generated images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
        }
    }
}

/// Everything that determines the generated images (saved as `generate.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationSettings {
    pub images_per_identity: usize,
    /// Similarity targets; image k of an identity uses m[k mod len].
    pub m: Vec<f32>,
    pub steps: usize,
    pub eta: f64,
    pub seed: u64,
    /// Copies of the inquiry face added to each identity (DCFace/CemiFace oversampling: 5).
    pub inquiry_copies: usize,
    pub format: ImageFormat,
    /// Generator checkpoint and identity network, for provenance.
    pub checkpoint: String,
    pub encoder: String,
}

impl GenerationSettings {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.images_per_identity == 0 {
            return bad("images per identity must be at least 1".into());
        }
        if self.m.is_empty() {
            return bad("give at least one m".into());
        }
        if let Some(m) = self.m.iter().find(|m| !(-1.0..=1.0).contains(*m)) {
            return bad(format!("m = {m} is outside [-1, 1]"));
        }
        if !(1..=1000).contains(&self.steps) {
            return bad(format!("steps = {} is outside 1–1000", self.steps));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return bad(format!("eta = {} is outside [0, 1]", self.eta));
        }
        Ok(())
    }

    /// The similarity target of image `index`.
    pub fn m_of(&self, index: usize) -> f32 {
        self.m[index % self.m.len()]
    }
}

/// The noise seed of image `index` of identity `identity`.
pub fn image_seed(run_seed: u64, identity: usize, index: usize) -> u64 {
    NoiseRng::derive(&[run_seed, identity as u64, index as u64])
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub identity: usize,
    pub name: String,
    /// Path relative to the output folder.
    pub file: String,
    /// Similarity target (absent for copies of the inquiry face).
    pub m: Option<f32>,
    pub seed: Option<u64>,
    /// Cosine similarity to the inquiry's C_id under E_id.
    pub similarity: f32,
}

/// A part of the work: identities i with i mod count = index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn identities(self, total: usize) -> impl Iterator<Item = usize> {
        (self.index..total).step_by(self.count)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers (and resumes) never
/// see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Encodes an RGB image (JPEG at quality 95, as insightface packs its sets).
pub fn encode(img: &image::RgbImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    let res = match format {
        ImageFormat::Png => img.write_to(&mut out, image::ImageFormat::Png),
        ImageFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).encode_image(img)
        }
    };
    res.map_err(|e| Error::Config(format!("cannot encode an image: {e}")))?;
    Ok(out.into_inner())
}

/// The output folder.
#[derive(Debug, Clone)]
pub struct DatasetDir {
    pub root: PathBuf,
}

impl DatasetDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn part(&self, identity: usize) -> PathBuf {
        self.root.join("parts").join(format!("{identity:06}.jsonl"))
    }
    pub fn image(&self, identity: usize, index: usize, format: ImageFormat) -> String {
        format!("images/{identity:06}/{index:03}.{}", format.extension())
    }
    pub fn shard_marker(&self, shard: Shard) -> PathBuf {
        self.root
            .join("shards")
            .join(format!("{}-of-{}.done", shard.index, shard.count))
    }
    pub fn identity_done(&self, identity: usize) -> bool {
        self.part(identity).exists()
    }
}

/// Generates (or regenerates) all images of one identity in batches of `batch`, writes them and
/// then the identity's manifest part. `on_batch(images_done)` is told after every batch; `on_step`
/// sees every DDIM step and may stop the run (then nothing of this identity is marked done).
#[allow(clippy::too_many_arguments)]
pub fn generate_identity(
    gen: &Generator,
    encoder: &dyn IdentityEncoder,
    inquiry: &Inquiry,
    identity: usize,
    settings: &GenerationSettings,
    batch: usize,
    dir: &DatasetDir,
    device: &Device,
    mut on_step: impl FnMut(StepInfo) -> ControlFlow<()>,
    mut on_batch: impl FnMut(usize),
) -> Result<Option<Vec<ManifestEntry>>> {
    let c_id = Tensor::new(inquiry.embedding.as_slice(), device)?.unsqueeze(0)?;
    if let Some(face) = &inquiry.image {
        let face = image_tensor(face, gen.image_size(), device)?;
        gen.prepare_inquiry(&c_id, &face, inquiry.latent_tensor(device)?.as_ref())?;
    }
    let n = settings.images_per_identity;
    let mut entries = Vec::with_capacity(n + settings.inquiry_copies);
    let mut stopped = false;
    for start in (0..n).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch.max(1)).min(n)).collect();
        let m: Vec<f32> = idx.iter().map(|&k| settings.m_of(k)).collect();
        let seeds: Vec<u64> = idx
            .iter()
            .map(|&k| image_seed(settings.seed, identity, k))
            .collect();
        let x = gen.sample_final(&c_id, &m, &seeds, settings.steps, settings.eta, |s| {
            let flow = on_step(s);
            stopped |= flow.is_break();
            flow
        })?;
        if stopped {
            return Ok(None);
        }
        let sims: Vec<f32> = similarity(encoder, &x, &c_id)?;
        for (j, &k) in idx.iter().enumerate() {
            let file = dir.image(identity, k, settings.format);
            write_atomic(
                &dir.root.join(&file),
                &encode(&tensor_image(&x.get(j)?)?, settings.format)?,
            )?;
            entries.push(ManifestEntry {
                identity,
                name: inquiry.name.clone(),
                file,
                m: Some(m[j]),
                seed: Some(seeds[j]),
                similarity: sims[j],
            });
        }
        on_batch(idx.len());
    }
    if settings.inquiry_copies > 0 {
        let face = inquiry.image.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "{}: no inquiry image to copy (random identities have none)",
                inquiry.name
            ))
        })?;
        let x = image_tensor(face, gen.image_size(), device)?;
        let sim = similarity(encoder, &x, &c_id)?[0];
        let bytes = encode(face, settings.format)?;
        for c in 0..settings.inquiry_copies {
            let file = dir.image(identity, n + c, settings.format);
            write_atomic(&dir.root.join(&file), &bytes)?;
            entries.push(ManifestEntry {
                identity,
                name: inquiry.name.clone(),
                file,
                m: None,
                seed: None,
                similarity: sim,
            });
        }
    }
    let mut lines = String::new();
    for e in &entries {
        lines.push_str(&serde_json::to_string(e).expect("plain data"));
        lines.push('\n');
    }
    write_atomic(&dir.part(identity), lines.as_bytes())?;
    Ok(Some(entries))
}

fn similarity(encoder: &dyn IdentityEncoder, x: &Tensor, c_id: &Tensor) -> Result<Vec<f32>> {
    let d = encoder.descriptors(x)?;
    let c = c_id.broadcast_as((x.dim(0)?, c_id.dim(1)?))?.contiguous()?;
    Ok(cosine_rows(&d, &c)?.to_vec1()?)
}

/// Reads every identity's manifest part (all must exist), in identity order.
pub fn read_manifest(dir: &DatasetDir, identities: usize) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    for id in 0..identities {
        let p = dir.part(id);
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        for (n, line) in text.lines().enumerate() {
            out.push(serde_json::from_str(line).map_err(|e| Error::Format {
                path: p.clone(),
                message: format!("line {}: {e}", n + 1),
            })?);
        }
    }
    Ok(out)
}
