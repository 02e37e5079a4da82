//! `bank.teacher_faces`: teachers the face detector finds no face in are drawn again.
//!
//! A teacher z = cos θ·z_a + sin θ·z_p runs between two faces, yet about one in ten decodes to an
//! image the detector (`FaceAligner::finds_face`, report-control's face rate) does not take for a
//! face, and the denoiser learns to draw what its teachers are. Each such teacher keeps its θ (so the
//! bank keeps its spread over similarity) and gets a new partner z_p, drawn the way the first was
//! (`PartnerPool::draw`, or a Gaussian latent with `toward = "gaussian"`), until the detector finds
//! a face, at most `TEACHER_TRIES` times; a teacher that never passes stays as first drawn. The
//! draws come from their own seeded stream, so the teachers the detector finds are those of the bank
//! without the option.

use candle_core::{Device, Tensor};

use super::{PartnerPool, CHUNK};
use crate::data::dcgan::{Dcgan, NZ};
use crate::data::sources::tensor_image;
use crate::face::align::FaceAligner;
use crate::noise::NoiseRng;
use crate::Result;

/// New partners a missed teacher tries before it is kept as first drawn.
pub const TEACHER_TRIES: usize = 4;

/// What a teacher is made of, per row of the bank (anchor-major, `cos_sin.len() / anchors` per
/// anchor, the first of each the anchor itself).
pub(super) struct Teachers<'a> {
    /// (N, 100).
    pub anchor_z: &'a Tensor,
    /// (cos θ, sin θ) of every teacher.
    pub cos_sin: &'a [(f32, f32)],
    /// Centred similarities between anchors (`toward = "anchors"`), or None for Gaussian partners.
    pub sim: Option<&'a [Vec<f32>]>,
    pub dissimilar: f32,
}

impl Teachers<'_> {
    /// `mix_z` (N·K, 100) with every teacher the detector misses drawn again. `tick` sees how
    /// many teachers the first pass has checked.
    pub fn redraw_missed(
        &self,
        mix_z: &Tensor,
        seed: u64,
        gan: &Dcgan,
        det: &FaceAligner,
        device: &Device,
        mut tick: impl FnMut(usize),
    ) -> Result<Tensor> {
        let rows = mix_z.dim(0)?;
        let anchors = self.anchor_z.dim(0)?;
        let k = rows / anchors;
        let mut missed = Vec::new();
        let mut start = 0;
        while start < rows {
            let len = CHUNK.min(rows - start);
            let x = gan.generate(&mix_z.narrow(0, start, len)?)?;
            for i in 0..len {
                let r = start + i;
                if r % k != 0 && !det.finds_face(&tensor_image(&x.get(i)?)?)? {
                    missed.push(r);
                }
            }
            tick(len - (start..start + len).filter(|r| r % k == 0).count());
            start += len;
        }
        let za: Vec<Vec<f32>> = self.anchor_z.to_vec2()?;
        let mut z: Vec<f32> = mix_z.flatten_all()?.to_vec1()?;
        let mut rng = NoiseRng::new(NoiseRng::derive(&[seed, 0xFACE5]));
        let mut redrawn = 0;
        for &r in &missed {
            let (a, j) = (r / k, r % k);
            let (c, s) = self.cos_sin[r];
            let pool = self.sim.map(|sim| PartnerPool::new(&sim[a], a, self.dissimilar));
            for _ in 0..TEACHER_TRIES {
                let zp: Vec<f32> = match &pool {
                    Some(pool) => za[pool.draw(j, &mut rng)].clone(),
                    None => (0..NZ).map(|_| rng.normal()).collect(),
                };
                let cand: Vec<f32> = za[a].iter().zip(&zp).map(|(x, y)| c * x + s * y).collect();
                let x = gan.generate(&Tensor::from_vec(cand.clone(), (1, NZ), device)?)?;
                if det.finds_face(&tensor_image(&x.get(0)?)?)? {
                    z[r * NZ..(r + 1) * NZ].copy_from_slice(&cand);
                    redrawn += 1;
                    break;
                }
            }
        }
        tracing::info!(
            "bank: the detector missed {} of {} teachers; {redrawn} drawn again as faces, {} kept as drawn",
            missed.len(),
            rows - anchors,
            missed.len() - redrawn
        );
        Ok(Tensor::from_vec(z, (rows, NZ), device)?)
    }
}
