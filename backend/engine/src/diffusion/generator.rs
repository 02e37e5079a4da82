//! Generation with a trained CemiFace model, whichever space it denoises: DDIM over the (EMA) denoiser,
//! conditioned on an inquiry identity and a similarity target m per image, each image with its own
//! noise seed, decoded to RGB faces.
//!
//! Two kinds behind one interface (`Denoiser`):
//! - **pixel** (`demo-64`, `paper-112`, `tiny-32`): the ADM UNet over images; the decoder is the
//!   identity.
//! - **latent** (`latent-dcgan`): the residual MLP over the DCGAN's z (`latent`); the decoder is the
//!   DCGAN G, and the inquiry's latent z_a is found once per identity by `latent::inversion`.
//!
//! Every caller (sample, generate, report-control, the demo, the admin sample grids) passes C_id from
//! `Generator::encoder()`, which is centred with the model's μ (`identity::centring`) when it has one.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::data::dcgan::{Dcgan, NZ};
use crate::diffusion::ddim::{Ddim, StepInfo};
use crate::diffusion::latent::config::LatentConfig;
use crate::diffusion::latent::denoiser::LatentDenoiser;
use crate::diffusion::latent::inversion::{invert, nearest_anchor};
use crate::diffusion::latent::trainer::{LatentState, ANCHORS_FILE};
use crate::diffusion::schedule::NoiseSchedule;
use crate::diffusion::trainer::{build_encoder, TrainConfig};
use crate::diffusion::unet::UNet;
use crate::identity::centring::{self, IdentityMean, MeanProvenance};
use crate::identity::encoder::IdentityEncoder;
use crate::noise::NoiseRng;
use crate::{Error, Result};

/// The latent kind's parts.
pub struct LatentModel {
    pub net: LatentDenoiser,
    pub gan: Dcgan,
    pub config: LatentConfig,
    anchor_z: Tensor,
    anchor_c: Tensor,
    /// Inverted latents by C_id (bit pattern), so each identity is inverted once.
    cache: Mutex<HashMap<Vec<u32>, Inversion>>,
}

/// A cached inversion: z_a (1, 100), the similarity G(z_a) reaches, and whether the inquiry's face
/// was known (the pixel term; an inversion from C_id alone is redone once the face comes).
#[derive(Clone)]
struct Inversion {
    z: Tensor,
    reached: f32,
    from_face: bool,
}

/// What denoises, in which space. (One per loaded generator, never copied: the size difference
/// between the variants costs nothing.)
#[allow(clippy::large_enum_variant)]
pub enum Denoiser {
    Pixel { unet: UNet, config: TrainConfig },
    Latent(Box<LatentModel>),
}

/// A loaded generator.
pub struct Generator {
    pub denoiser: Denoiser,
    pub schedule: NoiseSchedule,
    /// Training steps of the loaded checkpoint.
    pub step: u64,
    /// The checkpoint folder it was loaded from.
    pub dir: PathBuf,
    /// μ of the centred similarity, when the model has one.
    pub mean: Option<IdentityMean>,
    encoder: Arc<dyn IdentityEncoder>,
    device: Device,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.into(),
        message: e.to_string(),
    })
}

fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| Error::Format {
        path: path.into(),
        message: e.to_string(),
    })
}

impl Generator {
    /// Loads a checkpoint folder (`…/checkpoints/step_N`, or a run folder: its newest checkpoint),
    /// with the EMA weights unless `raw` is set; E_id (and the DCGAN for latent models) come from
    /// `assets_dir`.
    pub fn load(path: &Path, raw: bool, assets_dir: &Path, device: &Device) -> Result<Self> {
        let dir = resolve(path)?;
        let state_path = dir.join("state.json");
        let v = read_json(&state_path)?;
        let weights = dir.join(if raw {
            "model.safetensors"
        } else {
            "ema.safetensors"
        });
        let bad = |m: String| Error::Format {
            path: state_path.clone(),
            message: m,
        };
        let step = v["step"].as_u64().unwrap_or(0);
        if v["kind"] == "latent" {
            let state: LatentState = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
            let cfg = state.config;
            let vb = VarBuilder::from_tensors(load_tensors(&weights, device)?, DType::F32, device);
            let net = LatentDenoiser::new(cfg.denoiser.clone(), vb)?;
            let gan_path = cfg
                .decoder
                .weights
                .clone()
                .unwrap_or_else(|| assets_dir.join("gan-face-generate/weights.tar"));
            let gan = Dcgan::load(&gan_path, device)?;
            let mean = IdentityMean::load(&dir, state.identity_mean, device)?
                .ok_or_else(|| bad(format!("{} is missing", centring::FILE)))?;
            let anchors = load_tensors(&dir.join(ANCHORS_FILE), device)?;
            let get = |k: &str| {
                anchors.get(k).cloned().ok_or_else(|| Error::Format {
                    path: dir.join(ANCHORS_FILE),
                    message: format!("lacks `{k}`"),
                })
            };
            let encoder = centring::centred(build_encoder(&cfg.encoder, assets_dir, device)?, Some(&mean))?;
            return Ok(Self {
                schedule: NoiseSchedule::new(&cfg.schedule)?,
                denoiser: Denoiser::Latent(Box::new(LatentModel {
                    net,
                    gan,
                    anchor_z: get("z")?.to_dtype(DType::F32)?,
                    anchor_c: get("c")?.to_dtype(DType::F32)?,
                    config: cfg,
                    cache: Mutex::new(HashMap::new()),
                })),
                step,
                dir,
                mean: Some(mean),
                encoder,
                device: device.clone(),
            });
        }
        let config: TrainConfig =
            serde_json::from_value(v["config"].clone()).map_err(|e| bad(format!("config: {e}")))?;
        let unet = UNet::new(
            config.model.clone(),
            VarBuilder::from_tensors(load_tensors(&weights, device)?, DType::F32, device),
        )?;
        let provenance: Option<MeanProvenance> = serde_json::from_value(v["identity_mean"].clone()).ok();
        let mean = match provenance {
            Some(p) => IdentityMean::load(&dir, p, device)?,
            None => None,
        };
        let encoder = centring::centred(build_encoder(&config.encoder, assets_dir, device)?, mean.as_ref())?;
        Ok(Self {
            schedule: NoiseSchedule::new(&config.schedule)?,
            denoiser: Denoiser::Pixel { unet, config },
            step,
            dir,
            mean,
            encoder,
            device: device.clone(),
        })
    }

    /// A pixel generator with freshly initialised (untrained) weights: for benchmarks, whose timings
    /// do not depend on the weights' values.
    pub fn untrained(config: TrainConfig, assets_dir: &Path, device: &Device) -> Result<Self> {
        // Plain tensors, not variables: sampling must not record an autograd graph across steps.
        let unet = crate::checkpoint::random_frozen(device, |vb| UNet::new(config.model.clone(), vb))?;
        Ok(Self {
            schedule: NoiseSchedule::new(&config.schedule)?,
            encoder: build_encoder(&config.encoder, assets_dir, device)?,
            denoiser: Denoiser::Pixel { unet, config },
            step: 0,
            dir: PathBuf::from("(untrained)"),
            mean: None,
            device: device.clone(),
        })
    }

    /// Side of the images it produces.
    pub fn image_size(&self) -> usize {
        match &self.denoiser {
            Denoiser::Pixel { config, .. } => config.model.image_size,
            Denoiser::Latent(_) => 64,
        }
    }

    /// E_id as this model measures similarity (centred when the model has a μ).
    pub fn encoder(&self) -> Arc<dyn IdentityEncoder> {
        self.encoder.clone()
    }

    /// "pixel" or "latent".
    pub fn kind(&self) -> &'static str {
        match &self.denoiser {
            Denoiser::Pixel { .. } => "pixel",
            Denoiser::Latent(_) => "latent",
        }
    }

    /// An inquiry face (1, 3, S, S) in [−1, 1] at `image_size()`: its C_id (1, D), L2-normalised,
    /// from `encoder()`; for latent models it also sets the inquiry's latent, which `sample` with
    /// this C_id then uses: `latent` when the face is a decoder sample drawn from it
    /// ([`Self::prepare_inquiry`]), else one found from the face itself (identity and pixel terms).
    /// Callers that have the face pass it here; `sample` with a C_id alone inverts from the
    /// identity only.
    pub fn inquiry(&self, face: &Tensor, latent: Option<&Tensor>) -> Result<Tensor> {
        let c_id = crate::identity::encoder::l2_normalize(&self.encoder.descriptors(face)?)?;
        self.prepare_inquiry(&c_id, face, latent)?;
        Ok(c_id)
    }

    /// For an inquiry whose C_id is already known (a data set's stored embedding) and whose face
    /// is too: fits a latent model's z_a to that face (nothing for pixel models). `sample` with this
    /// C_id then uses it.
    pub fn fit_inquiry(&self, c_id: &Tensor, face: &Tensor) -> Result<()> {
        if let Denoiser::Latent(lm) = &self.denoiser {
            let s = self.image_size();
            if face.dims() != [1, 3, s, s] {
                return Err(Error::Config(format!(
                    "an inquiry face is (1, 3, {s}, {s}), not {:?}",
                    face.dims()
                )));
            }
            lm.inquiry_latent(c_id, Some(face), self.encoder.as_ref())?;
        }
        Ok(())
    }

    /// For an inquiry that is itself a decoder sample (a DCGAN identity), its latent is known: no
    /// inversion is needed, and m = 1 can reach the inquiry exactly instead of the ≈ 0.77 an
    /// inversion from the nearest anchor reaches. Checks that G(z) is the identity `c_id` (1, D)
    /// describes (centred cosine ≥ [`KNOWN_LATENT_MIN`]; a latent of another decoder is not) and
    /// returns that similarity; below it nothing is adopted and the caller
    /// falls back to [`Self::fit_inquiry`]. Pixel models: `Ok(None)`.
    pub fn adopt_inquiry_latent(&self, c_id: &Tensor, z: &Tensor) -> Result<Option<f32>> {
        let Denoiser::Latent(lm) = &self.denoiser else {
            return Ok(None);
        };
        let z = z
            .reshape((1, NZ))
            .map_err(|_| Error::Config(format!("an inquiry latent has {NZ} values, not {:?}", z.dims())))?;
        let c = crate::identity::encoder::l2_normalize(c_id)?;
        let drawn = self.encoder.descriptors(&lm.gan.generate(&z)?)?;
        let reached = crate::identity::encoder::cosine_rows(&drawn, &c)?.to_vec1::<f32>()?[0];
        if reached < KNOWN_LATENT_MIN {
            return Ok(Some(reached));
        }
        let mut cache = lm.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(
            latent_key(c_id)?,
            Inversion {
                z,
                reached,
                from_face: true,
            },
        );
        Ok(Some(reached))
    }

    /// An inquiry with its face and, when it is a decoder sample, its latent: adopts the latent
    /// ([`Self::adopt_inquiry_latent`]) or, when there is none or it does not draw this identity,
    /// fits one to the face ([`Self::fit_inquiry`]).
    pub fn prepare_inquiry(&self, c_id: &Tensor, face: &Tensor, latent: Option<&Tensor>) -> Result<()> {
        if let Some(z) = latent {
            if matches!(self.adopt_inquiry_latent(c_id, z)?, Some(r) if r >= KNOWN_LATENT_MIN) {
                return Ok(());
            }
        }
        self.fit_inquiry(c_id, face)
    }

    /// Samples one image per (m, seed) for the identity `c_id` (1, D), L2-normalised, from
    /// `encoder()` (or `inquiry()`, which also fits a latent model's z_a to the face). Returns
    /// (B, 3, S, S) in [−1, 1]. The callback sees every DDIM step (`x0` is the decoded x̂0, for
    /// previews) and may stop early.
    pub fn sample(
        &self,
        c_id: &Tensor,
        m: &[f32],
        seeds: &[u64],
        steps: usize,
        eta: f64,
        callback: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Tensor> {
        self.sample_impl(c_id, m, seeds, steps, eta, true, callback)
    }

    /// [`Self::sample`] for callers that want only the final images (data sets, reports, grids):
    /// a latent model decodes G once at the end instead of at every step, and the callback's `x0`
    /// is then the latent estimate ẑ0 (B, 100, 1, 1), not an image.
    pub fn sample_final(
        &self,
        c_id: &Tensor,
        m: &[f32],
        seeds: &[u64],
        steps: usize,
        eta: f64,
        callback: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Tensor> {
        self.sample_impl(c_id, m, seeds, steps, eta, false, callback)
    }

    #[allow(clippy::too_many_arguments)]
    fn sample_impl(
        &self,
        c_id: &Tensor,
        m: &[f32],
        seeds: &[u64],
        steps: usize,
        eta: f64,
        previews: bool,
        mut callback: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Tensor> {
        if m.len() != seeds.len() || m.is_empty() {
            return Err(Error::Config("one m and one seed per image".into()));
        }
        if let Some(bad) = m.iter().find(|v| !(-1.0..=1.0).contains(*v)) {
            return Err(Error::Config(format!("m = {bad} is outside [-1, 1]")));
        }
        let b = m.len();
        let ddim = Ddim::new(self.schedule.clone(), steps, eta)?;
        let c = c_id.broadcast_as((b, c_id.dim(1)?))?.contiguous()?;
        let m_t = Tensor::new(m, &self.device)?;
        let mut rngs: Vec<NoiseRng> = seeds.iter().map(|&s| NoiseRng::new(s)).collect();
        let dev = &self.device;
        let t_of = |t: usize| Tensor::new(vec![t as u32; b].as_slice(), dev);
        match &self.denoiser {
            Denoiser::Pixel { unet, .. } => {
                let s = self.image_size();
                ddim.sample(
                    (3, s, s),
                    &mut rngs,
                    dev,
                    |x, t| unet.forward(x, &t_of(t)?, &c, &m_t),
                    callback,
                )
            }
            Denoiser::Latent(lm) => {
                let (z_a, _) = lm.inquiry_latent(c_id, None, self.encoder.as_ref())?;
                let z_a = z_a.broadcast_as((b, NZ))?.contiguous()?;
                let ddim = ddim.with_clip(lm.config.train.x0_clip);
                let mut failed = None;
                let z = ddim.sample(
                    (NZ, 1, 1),
                    &mut rngs,
                    dev,
                    |z, t| {
                        let ts = vec![t as u32; b];
                        let (eps, _) =
                            lm.net
                                .predict(&self.schedule, &z.reshape((b, NZ))?, &ts, &z_a, &c, &m_t)?;
                        Ok(eps.reshape((b, NZ, 1, 1))?)
                    },
                    |s| {
                        if !previews {
                            return callback(s);
                        }
                        match s
                            .x0
                            .reshape((b, NZ))
                            .map_err(Error::from)
                            .and_then(|z| lm.gan.generate(&z))
                        {
                            Ok(img) => callback(StepInfo { x0: &img, ..s }),
                            Err(e) => {
                                failed = Some(e);
                                ControlFlow::Break(())
                            }
                        }
                    },
                )?;
                if let Some(e) = failed {
                    return Err(e);
                }
                lm.gan.generate(&z.reshape((b, NZ))?)
            }
        }
    }

    /// For latent models: the decoded reference faces (the anchors μ was computed from), at most `n`,
    /// so an independent judge can be centred on the same set; None for pixel models.
    pub fn reference_faces(&self, n: usize) -> Result<Option<Tensor>> {
        match &self.denoiser {
            Denoiser::Pixel { .. } => Ok(None),
            Denoiser::Latent(lm) => {
                let n = n.min(lm.anchor_z.dim(0)?);
                let mut out = Vec::new();
                for start in (0..n).step_by(64) {
                    out.push(
                        lm.gan
                            .generate(&lm.anchor_z.narrow(0, start, 64.min(n - start))?)?,
                    );
                }
                Ok(Some(Tensor::cat(&out, 0)?))
            }
        }
    }

    /// For latent models: the decoder G (for baselines of raw DCGAN samples).
    pub fn decoder(&self) -> Option<&Dcgan> {
        match &self.denoiser {
            Denoiser::Pixel { .. } => None,
            Denoiser::Latent(lm) => Some(&lm.gan),
        }
    }

    /// For latent models: G(z_a), the inquiry as the decoder can draw it (the face m = 1 aims
    /// at; inverting it on first use); None for pixel models.
    pub fn inquiry_reconstruction(&self, c_id: &Tensor) -> Result<Option<Tensor>> {
        match &self.denoiser {
            Denoiser::Pixel { .. } => Ok(None),
            Denoiser::Latent(lm) => {
                let (z, _) = lm.inquiry_latent(c_id, None, self.encoder.as_ref())?;
                Ok(Some(lm.gan.generate(&z)?))
            }
        }
    }

    /// For latent models: the inquiry's latent and the similarity G(z_a) reaches (inverting it on
    /// first use); None for pixel models.
    pub fn inquiry_latent(&self, c_id: &Tensor) -> Result<Option<(Tensor, f32)>> {
        match &self.denoiser {
            Denoiser::Pixel { .. } => Ok(None),
            Denoiser::Latent(lm) => Ok(Some(lm.inquiry_latent(c_id, None, self.encoder.as_ref())?)),
        }
    }
}

impl LatentModel {
    /// z_a for one identity (1, D): the cached inversion, or a new one from the nearest anchor (with
    /// the pixel term when the face (1, 3, 64, 64) is given).
    fn inquiry_latent(
        &self,
        c_id: &Tensor,
        face: Option<&Tensor>,
        encoder: &dyn IdentityEncoder,
    ) -> Result<(Tensor, f32)> {
        let key = latent_key(c_id)?;
        if let Some(hit) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if hit.from_face || face.is_none() {
                return Ok((hit.z.clone(), hit.reached));
            }
        }
        let idx = nearest_anchor(c_id, &self.anchor_c)?;
        let init = self
            .anchor_z
            .index_select(&Tensor::new(idx.as_slice(), c_id.device())?, 0)?;
        let inv = invert(&self.gan, encoder, c_id, face, &init, &self.config.inversion)?;
        let out = Inversion {
            z: inv.z,
            reached: inv.similarity[0],
            from_face: face.is_some(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(key, out.clone());
        Ok((out.z, out.reached))
    }
}

/// The smallest similarity of G(z) to an inquiry for its latent to count as that inquiry's own
/// (centred; a decoder sample scores 1.0 against itself, up to 8-bit rounding of its image).
pub const KNOWN_LATENT_MIN: f32 = 0.95;

/// The inversion cache's key: C_id's exact bits.
fn latent_key(c_id: &Tensor) -> Result<Vec<u32>> {
    Ok(c_id
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .map(|v| v.to_bits())
        .collect())
}

fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").exists() {
        return Ok(path.to_path_buf());
    }
    crate::run_dir::latest_checkpoint(path).ok_or_else(|| {
        Error::Config(format!(
            "{}: not a checkpoint folder (no state.json) nor a run with checkpoints",
            path.display()
        ))
    })
}
