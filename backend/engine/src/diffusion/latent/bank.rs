//! The seeded reference set of the latent preset, computed once per run (each descriptor once, never
//! per step) and cached in the run folder (`bank.safetensors`):
//! - **anchors**: filtered DCGAN latents z_a (dark samples and samples whose mirror image has another
//!   identity are dropped, as in the pixel presets' data source; with `bank.faces`, also samples in
//!   which the face detector finds no face) with their raw E_id descriptors.
//!   μ (`identity::centring`) is the anchors' mean descriptor; each anchor is also an identity to train on.
//! - **teacher pairs**: per anchor, `mixes` latents moved away from it, z = cos θ·z_a + sin θ·z_1
//!   (θ = max_angle·π/2·u^angle_power over stratified u; the first is z_a itself), with their measured
//!   centred similarity s to the anchor. z_1 is an independent Gaussian latent, or (`bank.toward =
//!   "anchors"`) another anchor, every other one drawn from those least similar to z_a: teachers
//!   then run between two filtered faces and reach the negative similarities strangers can have.
//!   Moving along the sphere keeps z's norm, so every teacher decodes to a DCGAN-quality face.
//!   With `bank.teacher_faces`, teachers the detector finds no face in are drawn again
//!   (`teacher_faces`).

mod teacher_faces;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::config::{LatentConfig, Toward};
use crate::data::dcgan::{mean_luma, Dcgan, NZ};
use crate::data::sources::tensor_image;
use crate::face::align::FaceAligner;
use crate::identity::centring::{IdentityMean, MeanProvenance};
use crate::identity::encoder::{cosine_rows, l2_normalize, IdentityEncoder};
use crate::noise::NoiseRng;
use crate::{Error, Result};

/// File name of the cache inside the run folder.
pub const FILE: &str = "bank.safetensors";
const CHUNK: usize = 64;

/// Anchors and teacher pairs.
pub struct Bank {
    /// (N, 100).
    pub anchor_z: Tensor,
    /// Raw descriptors of the anchors, (N, D).
    pub anchor_raw: Tensor,
    /// Teacher latents, (N·K, 100); row a·K + k belongs to anchor a.
    pub mix_z: Tensor,
    /// Centred similarity of each teacher to its anchor (host copy), N·K.
    pub mix_s: Vec<f32>,
    pub mixes: usize,
}

impl Bank {
    pub fn anchors(&self) -> usize {
        self.mix_s.len() / self.mixes
    }

    /// μ of the anchors' descriptors.
    pub fn mean(&self, encoder: &str, cfg: &LatentConfig) -> Result<IdentityMean> {
        IdentityMean::from_descriptors(
            &self.anchor_raw,
            MeanProvenance {
                encoder: encoder.to_string(),
                reference: format!(
                    "filtered DCGAN samples of the latent bank (seed {}, min_luma {}, min_flip_cos {}{})",
                    cfg.train.seed,
                    cfg.bank.min_luma,
                    cfg.bank.min_flip_cos,
                    if cfg.bank.faces {
                        ", faces the detector finds"
                    } else {
                        ""
                    }
                ),
                count: self.anchor_raw.dim(0)?,
            },
        )
    }

    /// Centred, L2-normalised identity embeddings C_id of the anchors, (N, D).
    pub fn anchor_c(&self) -> Result<Tensor> {
        l2_normalize(&self.anchor_raw.broadcast_sub(&self.anchor_raw.mean_keepdim(0)?)?)
    }

    /// The teacher of anchor `a` whose similarity is nearest to `m`: (row, similarity).
    pub fn nearest(&self, a: usize, m: f32) -> (usize, f32) {
        let k = self.mixes;
        (a * k..(a + 1) * k)
            .map(|j| (j, self.mix_s[j]))
            .min_by(|x, y| (x.1 - m).abs().total_cmp(&(y.1 - m).abs()))
            .expect("mixes > 0")
    }

    /// Builds the bank (or reads the run folder's cache made with the same settings). `progress`
    /// sees (descriptors done, total estimate). `detector` is required with `bank.faces`.
    #[allow(clippy::too_many_arguments)]
    pub fn load_or_build(
        cfg: &LatentConfig,
        gan: &Dcgan,
        encoder: &dyn IdentityEncoder,
        detector: Option<&FaceAligner>,
        run_dir: &Path,
        device: &Device,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let path = run_dir.join(FILE);
        let key = cache_key(cfg);
        if path.exists() {
            if let Ok(map) = candle_core::safetensors::load(&path, device) {
                let same = map
                    .get("key")
                    .and_then(|t| t.to_vec1::<u32>().ok())
                    .is_some_and(|k| k == key);
                if same {
                    return Self::from_map(&map, cfg.bank.mixes, &path);
                }
            }
        }
        let bank = Self::build(cfg, gan, encoder, detector, device, &mut progress)?;
        let map: HashMap<String, Tensor> = [
            ("anchor_z".to_string(), bank.anchor_z.clone()),
            ("anchor_raw".to_string(), bank.anchor_raw.clone()),
            ("mix_z".to_string(), bank.mix_z.clone()),
            ("mix_s".to_string(), Tensor::new(bank.mix_s.as_slice(), device)?),
            ("key".to_string(), Tensor::new(key.as_slice(), device)?),
        ]
        .into();
        let tmp = run_dir.join(format!("{FILE}.tmp"));
        candle_core::safetensors::save(&map, &tmp).map_err(|e| Error::Format {
            path: tmp.clone(),
            message: e.to_string(),
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(bank)
    }

    fn from_map(map: &HashMap<String, Tensor>, mixes: usize, path: &Path) -> Result<Self> {
        let get = |k: &str| {
            map.get(k).cloned().ok_or_else(|| Error::Format {
                path: path.into(),
                message: format!("lacks `{k}`"),
            })
        };
        Ok(Self {
            anchor_z: get("anchor_z")?,
            anchor_raw: get("anchor_raw")?,
            mix_z: get("mix_z")?,
            mix_s: get("mix_s")?.to_vec1()?,
            mixes,
        })
    }

    fn build(
        cfg: &LatentConfig,
        gan: &Dcgan,
        encoder: &dyn IdentityEncoder,
        detector: Option<&FaceAligner>,
        device: &Device,
        progress: &mut impl FnMut(usize, usize),
    ) -> Result<Self> {
        let b = &cfg.bank;
        if b.anchors < 2 || b.mixes < 2 {
            return Err(Error::Config(
                "bank.anchors and bank.mixes must be at least 2".into(),
            ));
        }
        if !(b.dissimilar > 0.0 && b.dissimilar <= 1.0) {
            return Err(Error::Config(format!(
                "bank.dissimilar = {} must be in (0, 1]",
                b.dissimilar
            )));
        }
        let detector = match (b.faces || b.teacher_faces, detector) {
            (true, None) => {
                return Err(Error::Config(
                    "bank.faces and bank.teacher_faces need the face detector (face-api's weights in the assets folder)".into(),
                ))
            }
            (true, d) => d,
            (false, _) => None,
        };
        let mut rng = NoiseRng::new(NoiseRng::derive(&[cfg.train.seed, 0xBA4C]));
        let detected = if b.teacher_faces {
            b.anchors * (b.mixes - 1)
        } else {
            0
        };
        let total = b.anchors * 2 + b.anchors * (b.mixes - 1) + detected;
        let mut done = 0;
        // Anchors.
        let (mut zs, mut ds) = (Vec::new(), Vec::new());
        let mut kept = 0;
        let mut drawn = 0;
        while kept < b.anchors {
            if drawn > 20 * b.anchors + 1000 {
                return Err(Error::Config(
                    "the DCGAN filter keeps almost nothing: loosen bank.min_*".into(),
                ));
            }
            let z = rng.randn(&[CHUNK, NZ], device)?;
            let x = gan.generate(&z)?;
            let luma: Vec<f32> = mean_luma(&x)?.to_vec1()?;
            let d = encoder.descriptors(&x)?;
            let flip: Vec<f32> = if b.min_flip_cos > -1.0 {
                cosine_rows(&d, &encoder.descriptors(&x.flip(&[3])?)?)?.to_vec1()?
            } else {
                vec![1.0; CHUNK]
            };
            drawn += CHUNK;
            done += 2 * CHUNK;
            for i in 0..CHUNK {
                if kept < b.anchors && luma[i] >= b.min_luma && flip[i] >= b.min_flip_cos {
                    if let Some(det) = detector {
                        if !det.finds_face(&tensor_image(&x.get(i)?)?)? {
                            continue;
                        }
                    }
                    zs.push(z.narrow(0, i, 1)?);
                    ds.push(d.narrow(0, i, 1)?);
                    kept += 1;
                }
            }
            progress(done.min(total), total);
        }
        let anchor_z = Tensor::cat(&zs, 0)?;
        let anchor_raw = Tensor::cat(&ds, 0)?;
        let mu = anchor_raw.mean_keepdim(0)?;
        let anchor_c = l2_normalize(&anchor_raw.broadcast_sub(&mu)?)?;
        // Teacher pairs, anchor-major; the first of each anchor is the anchor itself (s = 1).
        let k = b.mixes;
        let n = b.anchors;
        let mut cos_sin = Vec::with_capacity(n * k);
        let z1 = rng.randn(&[n * k, NZ], device)?;
        let sim: Option<Vec<Vec<f32>>> = match b.toward {
            Toward::Gaussian => None,
            Toward::Anchors => Some(anchor_c.matmul(&anchor_c.t()?)?.to_vec2()?),
        };
        let z1 = match &sim {
            None => z1,
            Some(sim) => {
                let partners = partners(sim, k, b.dissimilar, &mut rng);
                anchor_z.index_select(&Tensor::new(partners.as_slice(), device)?, 0)?
            }
        };
        for _ in 0..n {
            for j in 0..k {
                let u = if j == 0 {
                    0.0
                } else {
                    ((j - 1) as f32 + rng.next_u32() as f32 / u32::MAX as f32) / (k - 1) as f32
                };
                let theta = b.max_angle * std::f32::consts::FRAC_PI_2 * u.powf(b.angle_power);
                cos_sin.push((theta.cos(), theta.sin()));
            }
        }
        let cos = Tensor::from_vec(
            cos_sin.iter().map(|c| c.0).collect::<Vec<_>>(),
            (n * k, 1),
            device,
        )?;
        let sin = Tensor::from_vec(
            cos_sin.iter().map(|c| c.1).collect::<Vec<_>>(),
            (n * k, 1),
            device,
        )?;
        let rep = anchor_z
            .unsqueeze(1)?
            .broadcast_as((n, k, NZ))?
            .reshape((n * k, NZ))?;
        let mut mix_z = (rep.broadcast_mul(&cos)? + z1.broadcast_mul(&sin)?)?;
        if let (true, Some(det)) = (b.teacher_faces, detector) {
            let teachers = teacher_faces::Teachers {
                anchor_z: &anchor_z,
                cos_sin: &cos_sin,
                sim: sim.as_deref(),
                dissimilar: b.dissimilar,
            };
            mix_z = teachers.redraw_missed(&mix_z, cfg.train.seed, gan, det, device, |len| {
                done += len;
                progress(done.min(total), total);
            })?;
        }
        let c_rep = anchor_c
            .unsqueeze(1)?
            .broadcast_as((n, k, anchor_c.dim(1)?))?
            .reshape((n * k, anchor_c.dim(1)?))?;
        let mut mix_s = Vec::with_capacity(n * k);
        let mut start = 0;
        while start < n * k {
            let len = CHUNK.min(n * k - start);
            let zc = mix_z.narrow(0, start, len)?;
            let d = encoder.descriptors(&gan.generate(&zc)?)?;
            let s = cosine_rows(&d.broadcast_sub(&mu)?, &c_rep.narrow(0, start, len)?)?;
            mix_s.extend(s.to_vec1::<f32>()?);
            start += len;
            done += len;
            progress(done.min(total), total);
        }
        for a in 0..n {
            mix_s[a * k] = 1.0; // exactly the anchor
        }
        Ok(Self {
            anchor_z,
            anchor_raw,
            mix_z,
            mix_s,
            mixes: k,
        })
    }
}

/// Partner anchor of every teacher (anchor-major, k per anchor; the first, the anchor itself, is
/// unused): odd teachers draw from the share `dissimilar` of other anchors least similar to the
/// anchor (`sim`: centred cosines between anchors), even ones from all other anchors.
fn partners(sim: &[Vec<f32>], k: usize, dissimilar: f32, rng: &mut NoiseRng) -> Vec<u32> {
    let mut out = Vec::with_capacity(sim.len() * k);
    for (a, row) in sim.iter().enumerate() {
        let pool = PartnerPool::new(row, a, dissimilar);
        for j in 0..k {
            out.push(pool.draw(j, rng) as u32);
        }
    }
    out
}

/// The other anchors of one anchor, least similar first, and how many of them count as "least
/// similar" (the share `dissimilar`).
struct PartnerPool {
    order: Vec<usize>,
    few: usize,
}

impl PartnerPool {
    fn new(row: &[f32], a: usize, dissimilar: f32) -> Self {
        let mut order: Vec<usize> = (0..row.len()).filter(|&o| o != a).collect();
        order.sort_by(|&x, &y| row[x].total_cmp(&row[y]));
        let few = ((order.len() as f32 * dissimilar).ceil() as usize).clamp(1, order.len());
        Self { order, few }
    }

    /// Partner of teacher `j`: odd teachers draw from the least similar, even ones from all.
    fn draw(&self, j: usize, rng: &mut NoiseRng) -> usize {
        let pool = if j % 2 == 1 { self.few } else { self.order.len() };
        self.order[(rng.next_u32() as usize) % pool]
    }
}

/// What the cache depends on.
fn cache_key(cfg: &LatentConfig) -> Vec<u32> {
    let b = &cfg.bank;
    let mut key = vec![
        (cfg.train.seed & 0xffff_ffff) as u32,
        (cfg.train.seed >> 32) as u32,
        b.anchors as u32,
        b.mixes as u32,
        b.max_angle.to_bits(),
        b.min_luma.to_bits(),
        b.angle_power.to_bits(),
        b.min_flip_cos.to_bits(),
        b.faces as u32 | (matches!(b.toward, Toward::Anchors) as u32) << 1,
        b.dissimilar.to_bits(),
    ];
    if b.teacher_faces {
        key.push(1); // banks built before the key existed stay valid
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_teachers_pair_with_the_least_similar_tenth_and_never_with_the_anchor() {
        // 30 anchors on a line of similarities: anchor o's similarity to a is −|a − o|.
        let n = 30;
        let sim: Vec<Vec<f32>> = (0..n)
            .map(|a: i32| (0..n).map(|o: i32| -((a - o).abs() as f32)).collect())
            .collect();
        let k = 6;
        let p = partners(&sim, k, 0.1, &mut NoiseRng::new(1));
        assert_eq!(p.len(), n as usize * k);
        for a in 0..n as usize {
            let row = &p[a * k..(a + 1) * k];
            assert!(
                row.iter().all(|&o| o as usize != a),
                "anchor {a} paired with itself"
            );
            // The least similar tenth of the 29 others: 3 anchors, all at distance ≥ the 3rd largest.
            let mut far: Vec<i32> = (0..n)
                .filter(|&o| o as usize != a)
                .map(|o| (a as i32 - o).abs())
                .collect();
            far.sort_unstable();
            let bar = far[far.len() - 3];
            for j in (1..k).step_by(2) {
                assert!(
                    (a as i32 - row[j] as i32).abs() >= bar,
                    "anchor {a} teacher {j}: {}",
                    row[j]
                );
            }
        }
        // Even teachers reach beyond the tenth.
        assert!((0..n as usize).any(|a| (a as i32 - p[a * k + 2] as i32).abs() < 10));
    }
}
