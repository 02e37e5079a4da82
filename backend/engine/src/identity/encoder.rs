//! One interface for the identity network E_id, whichever network it is: dlib's ResNet (128-d, the
//! offline default) or an IResNet checkpoint (512-d, the paper's AdaFace IR-50 and friends).
//!
//! Input convention: ArcFace-aligned RGB images in [−1, 1], (B, 3, S, S), the value range the
//! diffusion model produces, so generated x̂0 goes straight in and gradients flow back to it.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{Device, Tensor, D};

use crate::face::warp::{AffineResample, Similarity};
use crate::identity::dlib_resnet::{DlibResNet, CHIP_SIZE};
use crate::recognition::iresnet::IResNet;
use crate::{Error, Result};

/// Raw descriptors and their L2-normalised embeddings, (B, D) each.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub raw: Tensor,
    pub normalized: Tensor,
}

/// A frozen face-recognition network seen as E_id.
pub trait IdentityEncoder: Send + Sync {
    /// Short name for logs and reports (`dlib-resnet`, `iresnet-50`, …).
    fn name(&self) -> String;
    /// Width of the descriptor.
    fn dim(&self) -> usize;
    /// Whether its cosines are centred similarities (`identity::centring::CentredEncoder`).
    fn centred(&self) -> bool {
        false
    }
    /// Raw (unnormalised) descriptors of ArcFace-aligned RGB images in [−1, 1]; differentiable.
    ///
    /// # Shapes
    /// `images`: (B, 3, S, S) → (B, dim).
    fn descriptors(&self, images: &Tensor) -> Result<Tensor>;

    /// Descriptors and L2-normalised embeddings.
    fn embed(&self, images: &Tensor) -> Result<Embeddings> {
        let raw = self.descriptors(images)?;
        Ok(Embeddings {
            normalized: l2_normalize(&raw)?,
            raw,
        })
    }
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// Cosine similarity of every row of `a` with every row of `b`: (Na, D), (Nb, D) → (Na, Nb).
pub fn cosine_matrix(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(l2_normalize(a)?.matmul(&l2_normalize(b)?.t()?)?)
}

/// Row-wise cosine similarity of two (B, D) batches → (B,).
pub fn cosine_rows(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((l2_normalize(a)? * l2_normalize(b)?)?.sum(D::Minus1)?)
}

/// ArcFace-112 coordinates → dlib chip coordinates, fitted over real faces.
pub const ARCFACE_TO_CHIP: Similarity = Similarity {
    a: 1.4597,
    b: -0.0262,
    tx: -9.111,
    ty: -27.793,
};

/// Output pixel → input pixel map of the ArcFace frame at `size` into the dlib chip.
fn chip_from_arcface(size: usize) -> Similarity {
    let to_112 = ARCFACE_TO_CHIP.inverse(); // chip → 112
                                            // 112-frame coordinate → `size`-frame pixel coordinate (pixel centres at integers).
    let s = size as f64 / 112.0;
    let (o1, o2) = (0.5 * s - 0.5, 0.5 * s - 0.5);
    Similarity {
        a: to_112.a * s,
        b: to_112.b * s,
        tx: to_112.tx * s + o1,
        ty: to_112.ty * s + o2,
    }
}

/// dlib's ResNet behind the interface: ArcFace-frame images are resampled into its 150×150 chip with
/// the fixed map above (black outside, about 14 px at the bottom), differentiably.
pub struct DlibEncoder {
    net: DlibResNet,
    device: Device,
    resamplers: Mutex<HashMap<usize, AffineResample>>,
}

impl DlibEncoder {
    /// Loads the face-api weights from the assets folder (`scripts/setup.sh` fetches them).
    pub fn load(assets_dir: &std::path::Path, device: &Device) -> Result<Self> {
        let manifest = assets_dir.join("face-api/face_recognition_model-weights_manifest.json");
        if !manifest.exists() {
            return Err(Error::Config(format!(
                "{} is missing (asset group `dlib-resnet`): run scripts/setup.sh",
                manifest.display()
            )));
        }
        Ok(Self::new(
            DlibResNet::new(crate::tfjs::var_builder(&manifest, device)?)?,
            device,
        ))
    }

    pub fn new(net: DlibResNet, device: &Device) -> Self {
        Self {
            net,
            device: device.clone(),
            resamplers: Mutex::new(HashMap::new()),
        }
    }

    /// The underlying network, for photos aligned straight to dlib's own chip framing.
    pub fn net(&self) -> &DlibResNet {
        &self.net
    }

    /// Chips (B, 3, 150, 150) in [−1, 1] resampled from ArcFace-frame images.
    pub fn to_chip(&self, images: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = images.dims4()?;
        if h != w {
            return Err(Error::Config(format!(
                "identity encoder needs square images, got {h}×{w}"
            )));
        }
        let mut cache = self.resamplers.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(h) {
            let r = AffineResample::new(
                (h, w),
                (CHIP_SIZE, CHIP_SIZE),
                &chip_from_arcface(h),
                &self.device,
            )?;
            e.insert(r);
        }
        cache[&h].forward(images)
    }
}

impl IdentityEncoder for DlibEncoder {
    fn name(&self) -> String {
        "dlib-resnet".into()
    }

    fn dim(&self) -> usize {
        128
    }

    fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
        let chips = self.to_chip(images)?;
        self.net.forward(&chips.affine(127.5, 127.5)?)
    }
}

/// An IResNet checkpoint behind the interface; images that are not 112×112 are resized bilinearly.
pub struct IResNetEncoder {
    net: IResNet,
    resize: Resize112,
}

impl IResNetEncoder {
    pub fn new(net: IResNet, device: &Device) -> Self {
        Self {
            net,
            resize: Resize112::new(device),
        }
    }
}

/// Brings (B, 3, S, S) ArcFace-frame images to 112×112 (bilinear, pixel centres aligned), caching
/// one resampler per input size.
pub struct Resize112 {
    device: Device,
    resamplers: Mutex<HashMap<usize, AffineResample>>,
}

impl Resize112 {
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            resamplers: Mutex::new(HashMap::new()),
        }
    }

    pub fn to_112(&self, images: &Tensor) -> Result<Tensor> {
        let (_, _, h, _) = images.dims4()?;
        if h == 112 {
            return Ok(images.clone());
        }
        let mut cache = self.resamplers.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::hash_map::Entry::Vacant(e) = cache.entry(h) {
            let s = h as f64 / 112.0;
            let map = Similarity {
                a: s,
                b: 0.0,
                tx: 0.5 * s - 0.5,
                ty: 0.5 * s - 0.5,
            };
            e.insert(AffineResample::new((h, h), (112, 112), &map, &self.device)?);
        }
        cache[&h].forward(images)
    }
}

impl IdentityEncoder for IResNetEncoder {
    fn name(&self) -> String {
        let c = self.net.config();
        format!("iresnet-{}{}", if c.se { "se-" } else { "" }, c.depth)
    }

    fn dim(&self) -> usize {
        self.net.config().embedding_dim
    }

    fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
        let x = self.resize.to_112(images)?;
        self.net.forward_t(&x, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_parallel_and_orthogonal_rows() {
        let a = Tensor::new(&[[1f32, 0.], [0., 2.]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[3f32, 0.], [1., 1.]], &Device::Cpu).unwrap();
        let m = cosine_matrix(&a, &b).unwrap().to_vec2::<f32>().unwrap();
        assert!((m[0][0] - 1.0).abs() < 1e-6 && m[1][0].abs() < 1e-6);
        assert!((m[1][1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        let r = cosine_rows(&a, &b).unwrap().to_vec1::<f32>().unwrap();
        assert!((r[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_arcface_map_puts_the_template_eyes_where_dlib_chips_have_them() {
        // The template's left eye (38.29, 51.70) lands on dlib's mean-face eye centre in the chip:
        // points 36–41 average (0.2255, 0.2160) → ((0.25 + m) / 1.5 · 150) = (47.6, 46.6).
        let [x, y] = ARCFACE_TO_CHIP.apply([38.2946, 51.6963]);
        assert!((x - 47.6).abs() < 1.5 && (y - 46.6).abs() < 1.5, "({x}, {y})");
        // At the native 112 size the output→input map is the plain inverse.
        let m = chip_from_arcface(112);
        let back = m.apply(ARCFACE_TO_CHIP.apply([50.0, 60.0]));
        assert!((back[0] - 50.0).abs() < 1e-9 && (back[1] - 60.0).abs() < 1e-9);
    }
}
