//! Inquiry identities for dataset generation (docs/paper.md §3.2, Algorithm 2): one face per identity
//! from an image folder, a RecordIO set or the DCGAN stream, or bare random identity vectors, kept
//! only when they are unique: a greedy pass accepts a candidate if its cosine similarity to every
//! identity accepted so far is below a threshold (DCFace's uniqueness rule, r = 0.3 under AdaFace).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::data::image_io::{self, ImageLimits};
use crate::data::recordio::RecordReader;
use crate::data::sources::{image_tensor, tensor_image, DcganSource};
use crate::identity::encoder::{l2_normalize, IdentityEncoder};
use crate::noise::NoiseRng;
use crate::{Error, Result};

/// Uniqueness threshold DCFace and CemiFace use under AdaFace IR-101 (512-d, centred embeddings).
pub const ADAFACE_UNIQUE: f32 = 0.3;
/// The same rule on dlib's scale. dlib descriptors are not centred and have norm ≈ 1.4, so cosines
/// run high: the public-domain photos score 0.96 for the same person and 0.82–0.85 across people,
/// and dlib's own same-person cut (L2 distance 0.6) sits at cosine ≈ 0.91. DCGAN faces, a narrow
/// population, score 0.79–0.95 among themselves (median 0.885).
pub const DLIB_UNIQUE: f32 = 0.9;
/// The paper's uniqueness threshold, applied to centred similarities.
pub const CENTRED_UNIQUE: f32 = 0.3;

/// The default uniqueness threshold for an identity network, by its descriptor width.
pub fn default_threshold(encoder: &dyn IdentityEncoder) -> f32 {
    if encoder.centred() {
        // Centred dlib: different people 0.13–0.26, same person 0.70–0.81 (docs/latent-generator.md),
        // so the paper's 0.3 separates them as it does on AdaFace's scale.
        CENTRED_UNIQUE
    } else if encoder.dim() == 128 {
        DLIB_UNIQUE
    } else {
        ADAFACE_UNIQUE
    }
}

/// Where inquiry identities come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum InquirySource {
    /// A folder of aligned crops: one identity per sub-folder (its first image), or per file when
    /// the folder is flat.
    Folder { path: PathBuf },
    /// An insightface `.rec`: the first image of each label.
    Recordio { path: PathBuf },
    /// The DCGAN stream (dark samples dropped). With `faces` (an assets folder holding face-api's
    /// detector), only samples in which the detector finds a face: the faces a data set's
    /// identities should be, and the faces `report-control`'s face rate is measured against.
    Dcgan {
        weights: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        faces: Option<PathBuf>,
    },
    /// Random unit vectors in E_id's space (no inquiry image).
    Random,
}

/// One accepted inquiry identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inquiry {
    pub name: String,
    /// L2-normalised C_id.
    pub embedding: Vec<f32>,
    /// The inquiry face at the generator's size (absent for random identities).
    #[serde(skip)]
    pub image: Option<RgbImage>,
    /// The decoder latent the face was drawn from (DCGAN inquiries): a latent generator conditions
    /// on it directly instead of inverting the face (`Generator::prepare_inquiry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent: Option<Vec<f32>>,
}

impl Inquiry {
    /// The latent as a (1, 100) tensor, when there is one.
    pub fn latent_tensor(&self, device: &Device) -> Result<Option<Tensor>> {
        self.latent
            .as_ref()
            .map(|z| Ok(Tensor::new(z.as_slice(), device)?.unsqueeze(0)?))
            .transpose()
    }
}

/// What the selection saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelectionStats {
    pub considered: usize,
    pub rejected_similar: usize,
    pub threshold: f32,
    /// The stop callback ended the selection early (the list is partial).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// The greedy uniqueness pass over the rows of `emb` (L2-normalised), given the rows accepted so
/// far in `kept` (updated), stopping once `kept` holds `limit` rows. Returns the indices it kept and
/// how many rows it examined.
pub fn greedy_unique(
    emb: &[Vec<f32>],
    kept: &mut Vec<Vec<f32>>,
    threshold: f32,
    limit: usize,
) -> (Vec<usize>, usize) {
    let mut out = Vec::new();
    let mut examined = 0;
    for (i, e) in emb.iter().enumerate() {
        if kept.len() >= limit {
            break;
        }
        examined += 1;
        let max = kept
            .iter()
            .map(|k| k.iter().zip(e).map(|(a, b)| a * b).sum::<f32>())
            .fold(f32::NEG_INFINITY, f32::max);
        if max < threshold {
            kept.push(e.clone());
            out.push(i);
        }
    }
    (out, examined)
}

/// Square images under `root`: (identity name, file), one per sub-folder or per file.
fn folder_candidates(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(root, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    let mut out = Vec::new();
    for p in entries {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| Error::io(&p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| image_io::is_image_path(f))
                .collect();
            files.sort();
            if let Some(first) = files.into_iter().next() {
                out.push((name, first));
            }
        } else if image_io::is_image_path(&p) {
            out.push((name, p));
        }
    }
    if out.is_empty() {
        return Err(Error::Config(format!(
            "{}: no JPEG, PNG or WebP images found",
            root.display()
        )));
    }
    Ok(out)
}

/// The greedy selection in progress.
struct Selector<'a> {
    encoder: &'a dyn IdentityEncoder,
    stop: &'a dyn Fn() -> bool,
    count: usize,
    kept: Vec<Vec<f32>>,
    out: Vec<Inquiry>,
    stats: SelectionStats,
}

impl Selector<'_> {
    /// Enough identities, or asked to stop (checked once per chunk of candidates).
    fn full(&mut self) -> bool {
        if !self.stats.stopped && self.out.len() < self.count && (self.stop)() {
            self.stats.stopped = true;
        }
        self.stats.stopped || self.out.len() >= self.count
    }

    /// Offers candidates (their faces, or bare embeddings) to the greedy filter.
    fn offer(
        &mut self,
        names: Vec<String>,
        faces: Option<Tensor>,
        emb: Option<Tensor>,
        latents: Option<Tensor>,
    ) -> Result<()> {
        let emb = match (emb, &faces) {
            (Some(e), _) => e,
            (None, Some(f)) => l2_normalize(&self.encoder.descriptors(f)?)?,
            (None, None) => unreachable!("a candidate has a face or an embedding"),
        };
        let rows: Vec<Vec<f32>> = emb.to_vec2()?;
        let (keep, examined) = greedy_unique(&rows, &mut self.kept, self.stats.threshold, self.count);
        self.stats.considered += examined;
        self.stats.rejected_similar += examined - keep.len();
        for i in keep {
            let image = match &faces {
                Some(f) => Some(tensor_image(&f.get(i)?)?),
                None => None,
            };
            let latent = match &latents {
                Some(z) => Some(z.get(i)?.to_vec1()?),
                None => None,
            };
            self.out.push(Inquiry {
                name: names[i].clone(),
                embedding: rows[i].clone(),
                image,
                latent,
            });
        }
        Ok(())
    }
}

/// Selects up to `count` unique inquiry identities. `encoder` computes C_id on faces at `size`.
pub fn select(
    source: &InquirySource,
    count: usize,
    threshold: f32,
    encoder: &dyn IdentityEncoder,
    size: usize,
    seed: u64,
    device: &Device,
) -> Result<(Vec<Inquiry>, SelectionStats)> {
    select_until(source, count, threshold, encoder, size, seed, device, &|| false)
}

/// [`select`] that asks `stop` before every chunk of candidates and, when it says yes, returns
/// what it kept so far with `stats.stopped` set (a cancelled job never waits for a long selection).
#[allow(clippy::too_many_arguments)]
pub fn select_until(
    source: &InquirySource,
    count: usize,
    threshold: f32,
    encoder: &dyn IdentityEncoder,
    size: usize,
    seed: u64,
    device: &Device,
    stop: &dyn Fn() -> bool,
) -> Result<(Vec<Inquiry>, SelectionStats)> {
    let mut sel = Selector {
        encoder,
        stop,
        count,
        kept: Vec::new(),
        out: Vec::new(),
        stats: SelectionStats {
            threshold,
            ..Default::default()
        },
    };
    let mut rng = NoiseRng::new(NoiseRng::derive(&[seed, 0x1_0000_0001]));
    const CHUNK: usize = 16;
    match source {
        InquirySource::Folder { path } => {
            for chunk in folder_candidates(path)?.chunks(CHUNK) {
                let faces = chunk
                    .iter()
                    .map(|(_, f)| {
                        let img = image_io::read(f, ImageLimits::default())?;
                        if img.width() != img.height() {
                            return Err(Error::Format {
                                path: f.clone(),
                                message: format!(
                                    "{}×{} is not an aligned square crop (run `cemiface align` first)",
                                    img.width(),
                                    img.height()
                                ),
                            });
                        }
                        image_tensor(&img, size, device)
                    })
                    .collect::<Result<Vec<_>>>()?;
                sel.offer(
                    chunk.iter().map(|c| c.0.clone()).collect(),
                    Some(Tensor::cat(&faces, 0)?),
                    None,
                    None,
                )?;
                if sel.full() {
                    break;
                }
            }
        }
        InquirySource::Recordio { path } => {
            let mut reader = RecordReader::open(path)?;
            let mut seen = BTreeSet::new();
            let mut pending: Vec<(String, Tensor)> = Vec::new();
            for key in reader.image_keys()? {
                let rec = reader.read(key)?;
                let label = rec.label as i64;
                if !seen.insert(label) {
                    continue;
                }
                let img = image_io::decode(
                    &rec.image,
                    &format!("{} record {key}", path.display()),
                    ImageLimits::default(),
                )?;
                pending.push((format!("label_{label}"), image_tensor(&img, size, device)?));
                if pending.len() == CHUNK {
                    let (n, f): (Vec<_>, Vec<_>) = std::mem::take(&mut pending).into_iter().unzip();
                    sel.offer(n, Some(Tensor::cat(&f, 0)?), None, None)?;
                    if sel.full() {
                        break;
                    }
                }
            }
            if !pending.is_empty() && !sel.full() {
                let (n, f): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
                sel.offer(n, Some(Tensor::cat(&f, 0)?), None, None)?;
            }
        }
        InquirySource::Dcgan { weights, faces } => {
            let gan = crate::data::dcgan::Dcgan::load(weights, device)?;
            let mut stream = DcganSource::new(gan, size, 0.2, -1.0, None);
            if let Some(assets) = faces {
                // On the CPU: see `nn::depthwise` (the GPU would run one convolution per channel).
                let det = crate::face::align::FaceAligner::load(assets, &Device::Cpu)?;
                stream = stream.with_detector(det);
            }
            let mut tries = 0;
            while !sel.full() {
                tries += 1;
                if tries > 50 + 20 * count / CHUNK {
                    return Err(Error::Config(format!(
                        "only {} unique DCGAN identities after {} candidates at threshold {threshold}: raise it",
                        sel.out.len(),
                        sel.stats.considered
                    )));
                }
                let (faces, latents) = stream.next_batch_with_latents(CHUNK, &mut rng)?;
                let first = sel.stats.considered;
                sel.offer(
                    (first..first + CHUNK).map(|i| format!("dcgan_{i:06}")).collect(),
                    Some(faces),
                    None,
                    Some(latents),
                )?;
            }
        }
        InquirySource::Random => {
            while !sel.full() {
                let first = sel.stats.considered;
                let z = rng.randn(&[CHUNK, encoder.dim()], device)?;
                sel.offer(
                    (first..first + CHUNK).map(|i| format!("random_{i:06}")).collect(),
                    None,
                    Some(l2_normalize(&z)?),
                    None,
                )?;
            }
        }
    }
    Ok((sel.out, sel.stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_pass_keeps_only_mutually_dissimilar_rows_in_order() {
        let (c, s) = (0.8f32, 0.6f32); // cos and sin of ~36.9°
        let rows = vec![
            vec![1.0, 0.0],
            vec![c, s],
            vec![0.0, 1.0],
            vec![-1.0, 0.0],
            vec![s, c],
        ];
        let mut kept = Vec::new();
        // Threshold 0.7: row 1 (cos 0.8 to row 0) and row 4 (cos 0.8 to row 2) are look-alikes.
        let (idx, seen) = greedy_unique(&rows, &mut kept, 0.7, 10);
        assert_eq!((idx, seen), (vec![0, 2, 3], 5));
        // A looser threshold keeps them; a limit stops early.
        let (idx, seen) = greedy_unique(&rows, &mut Vec::new(), 0.9, 2);
        assert_eq!((idx, seen), (vec![0, 1], 2));
        // Rows already accepted count against new ones.
        let (idx, _) = greedy_unique(&[vec![c, s]], &mut kept, 0.7, 10);
        assert!(idx.is_empty());
    }

    /// An encoder of dimension 64 (random inquiries only use its dimension).
    struct Dim64;
    impl IdentityEncoder for Dim64 {
        fn name(&self) -> String {
            "dim64".into()
        }
        fn dim(&self) -> usize {
            64
        }
        fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
            Ok(images.flatten_from(1)?.narrow(1, 0, 64)?)
        }
    }

    #[test]
    fn a_stop_request_ends_the_selection_between_chunks() {
        let dev = Device::Cpu;
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 3
        };
        let (list, stats) =
            select_until(&InquirySource::Random, 100_000, 0.5, &Dim64, 32, 1, &dev, &stop).unwrap();
        assert!(stats.stopped);
        assert_eq!(asked.get(), 4, "asked once per chunk");
        assert!(
            list.len() <= 3 * 16 && !list.is_empty(),
            "{} kept before the stop",
            list.len()
        );
        // Without a stop the same call selects what was asked, from the same stream.
        let (full, stats) = select(&InquirySource::Random, 40, 0.5, &Dim64, 32, 1, &dev).unwrap();
        assert!(!stats.stopped && full.len() == 40);
        assert_eq!(full[0].embedding, list[0].embedding);
    }
}
