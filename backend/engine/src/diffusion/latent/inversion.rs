//! The inquiry's latent: z_a = argmin_z 1 − cos_c(C_id, E_id(G(z))) + prior·(‖z‖²/d − 1)², by Adam,
//! started from the nearest shipped anchor (by C_id). Done once per inquiry identity (a photo or any
//! face), never per sample: every image of that identity is then sampled by the denoiser alone.

use candle_core::{Tensor, Var};

use crate::Result;
use crate::data::dcgan::Dcgan;
use crate::identity::encoder::{cosine_rows, l2_normalize, IdentityEncoder};
use super::config::InversionConfig;

/// The latents found and their centred similarity to the targets.
pub struct Inverted {
    /// (B, 100).
    pub z: Tensor,
    /// Similarity reached per identity.
    pub similarity: Vec<f32>,
}

/// Inverts a batch of identities. `c_target`: (B, D) centred L2-normalised embeddings; `init`:
/// (B, 100) starting latents; `encoder` must be the centred E_id.
pub fn invert(
    gan: &Dcgan,
    encoder: &dyn IdentityEncoder,
    c_target: &Tensor,
    init: &Tensor,
    cfg: &InversionConfig,
) -> Result<Inverted> {
    let z = Var::from_tensor(&init.detach())?;
    let d = init.dim(1)? as f64;
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut m = init.zeros_like()?;
    let mut v = init.zeros_like()?;
    let target = l2_normalize(&c_target.detach())?;
    let mut best = init.detach();
    let mut best_s = vec![f32::NEG_INFINITY; init.dim(0)?];
    for step in 0..=cfg.steps {
        let c = encoder.descriptors(&gan.generate(z.as_tensor())?)?;
        let s = cosine_rows(&c, &target)?;
        // Keep the best latent of each row seen so far (the last step only measures).
        let sv: Vec<f32> = s.to_vec1()?;
        let improved: Vec<u8> = sv.iter().zip(&best_s).map(|(a, b)| (a > b) as u8).collect();
        if improved.contains(&1) {
            let mask = Tensor::new(improved.as_slice(), init.device())?.unsqueeze(1)?;
            let mask = mask.broadcast_as(init.shape())?;
            best = mask.where_cond(&z.as_tensor().detach(), &best)?;
            for (b, a) in best_s.iter_mut().zip(&sv) {
                *b = b.max(*a);
            }
        }
        if step == cfg.steps {
            break;
        }
        let norm = ((z.as_tensor().sqr()?.sum(1)? / d)? - 1.0)?.sqr()?;
        let loss = (s.affine(-1.0, 1.0)? + (norm * cfg.prior)?)?.sum_all()?;
        let grads = loss.backward()?;
        let Some(g) = grads.get(z.as_tensor()) else {
            break;
        };
        let t = (step + 1) as i32;
        m = ((m * b1)? + (g * (1.0 - b1))?)?;
        v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
        let mh = (&m / (1.0 - b1.powi(t)))?;
        let vh = (&v / (1.0 - b2.powi(t)))?;
        let update = (mh / (vh.sqrt()? + eps)?)?;
        z.set(&(z.as_tensor().detach() - (update * cfg.lr)?)?)?;
    }
    Ok(Inverted {
        z: best,
        similarity: best_s,
    })
}

/// Row index of the anchor nearest to each target, by cosine: (B, D) × (N, D) → B indices.
pub fn nearest_anchor(c_target: &Tensor, anchor_c: &Tensor) -> Result<Vec<u32>> {
    let sims = l2_normalize(c_target)?.matmul(&anchor_c.t()?)?;
    Ok(sims.argmax(1)?.to_vec1()?)
}
