//! CemiFace's similarity-matching loss (docs/paper.md §2.4, Eqs. 9–14):
//! L_SimMat = (1 − t/T)·‖1 − s‖ + (t/T)·‖m − s‖ with s = cos(E_id(x0), E_id(x̂0)), batch mean.
//! Near t = 0 the estimate must keep the identity; near t = T its similarity must match m.

use candle_core::Tensor;

use crate::Result;

/// The norm of the paper's ‖·‖₂ on a scalar: |·| (default) or its square.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimMatForm {
    #[default]
    Absolute,
    Squared,
}

/// The loss and its two terms (batch means), for logging.
#[derive(Debug, Clone)]
pub struct SimMat {
    pub loss: Tensor,
    pub rec: Tensor,
    pub sim: Tensor,
}

/// `s`: (B,) achieved cosine similarities; `m`: (B,) targets; `gamma`: (B,) t/T.
pub fn sim_mat(s: &Tensor, m: &Tensor, gamma: &Tensor, form: SimMatForm) -> Result<SimMat> {
    sim_mat_toward(s, &s.ones_like()?, m, gamma, form)
}

/// The same loss when the training sample x0 is not the identity itself but a teacher whose own
/// similarity to the identity is `s_data` (the latent preset's teacher pairs):
/// (1 − t/T)·‖s_data − s‖ + (t/T)·‖m − s‖. With s_data = 1 (x0 is the identity) it is the paper's.
pub fn sim_mat_toward(
    s: &Tensor,
    s_data: &Tensor,
    m: &Tensor,
    gamma: &Tensor,
    form: SimMatForm,
) -> Result<SimMat> {
    let dist = |d: Tensor| -> candle_core::Result<Tensor> {
        match form {
            SimMatForm::Absolute => d.abs(),
            SimMatForm::Squared => d.sqr(),
        }
    };
    let rec = dist((s_data - s)?)?; // |s_data − s| (|1 − s| in the paper)
    let sim = dist((m - s)?)?; // |m − s|
    let loss = (rec.broadcast_mul(&gamma.affine(-1.0, 1.0)?)? + sim.broadcast_mul(gamma)?)?.mean_all()?;
    Ok(SimMat {
        loss,
        rec: rec.mean_all()?,
        sim: sim.mean_all()?,
    })
}

/// The similarity-target grid over [−1, 1] with the given step (paper default 0.04 → 51 values).
pub fn m_grid(step: f64) -> Vec<f32> {
    let n = (2.0 / step).round() as usize;
    (0..=n)
        .map(|i| (-1.0 + 2.0 * i as f64 / n as f64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn weights_move_from_reconstruction_to_similarity_with_t() {
        let dev = Device::Cpu;
        let s = Tensor::new(&[0.5f32, 0.5], &dev).unwrap();
        let m = Tensor::new(&[0.0f32, 0.0], &dev).unwrap();
        // t = 0: only |1 − s| = 0.5; t = T: only |m − s| = 0.5; halfway: 0.5 either way.
        let g = |v: f32| Tensor::new(&[v, v], &dev).unwrap();
        let l = |gamma: f32, form| {
            sim_mat(&s, &m, &g(gamma), form)
                .unwrap()
                .loss
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!((l(0.0, SimMatForm::Absolute) - 0.5).abs() < 1e-6);
        assert!((l(1.0, SimMatForm::Absolute) - 0.5).abs() < 1e-6);
        assert!((l(1.0, SimMatForm::Squared) - 0.25).abs() < 1e-6);
        let s2 = Tensor::new(&[0.9f32, 0.9], &dev).unwrap();
        let near = sim_mat(&s2, &m, &g(0.0), SimMatForm::Absolute)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        let far = sim_mat(&s2, &m, &g(1.0), SimMatForm::Absolute)
            .unwrap()
            .loss
            .to_scalar::<f32>()
            .unwrap();
        assert!((near - 0.1).abs() < 1e-6 && (far - 0.9).abs() < 1e-6);
    }

    #[test]
    fn the_default_grid_has_51_values_from_minus_one_to_one() {
        let g = m_grid(0.04);
        assert_eq!(g.len(), 51);
        assert_eq!((g[0], g[25], g[50]), (-1.0, 0.0, 1.0));
    }
}
