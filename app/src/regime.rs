//! What a similarity target m means for a generated sample (docs/paper.md §1, §3.2; the paper's Table 11).
//!
//! CemiFace conditions the generator on m ∈ [−1, 1], the cosine similarity the generated face should
//! have to its inquiry identity. The paper finds that samples near the identity's centre are too easy,
//! samples far from it too hard, and that data generated at m ≈ 0 trains the best recognition models.
//!
//! The bands are on the centred similarity scale every generator reports (docs/latent-generator.md §1),
//! where measured with dlib: two photos of the same person score 0.70–0.81, two different people
//! 0.13–0.26, unrelated DCGAN faces 0.00 ± 0.17 (−0.45…+0.48). So "easy" (≥ 0.6) is as close as two
//! photos of one person, "semi-hard" (|m| ≤ 0.2) is about one standard deviation of unrelated pairs
//! around their mean, and "hard" (< −0.2) is less similar than most unrelated faces.

/// The band a similarity target falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// m ≥ 0.6: near-copies of the identity; little to learn from.
    Easy,
    /// 0.2 < m < 0.6: clearly the same person, with visible variation.
    Moderate,
    /// −0.2 ≤ m ≤ 0.2: the paper's semi-hard band; its generation default is m = 0.
    SemiHard,
    /// m < −0.2: far from the centre; identity is likely lost.
    Hard,
}

impl Regime {
    /// Classifies m; `None` outside [−1, 1] or for NaN.
    pub fn of(m: f64) -> Option<Self> {
        if !(-1.0..=1.0).contains(&m) {
            return None;
        }
        Some(if m >= 0.6 {
            Self::Easy
        } else if m > 0.2 {
            Self::Moderate
        } else if m >= -0.2 {
            Self::SemiHard
        } else {
            Self::Hard
        })
    }

    /// Short name shown in the UI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Easy => "easy",
            Self::Moderate => "moderate",
            Self::SemiHard => "semi-hard",
            Self::Hard => "hard",
        }
    }

    /// One sentence on what such samples do for face-recognition training.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Easy => "Near-copies of the inquiry face. Models trained on them see too little variation.",
            Self::Moderate => "The same person with visible changes of pose, light and expression.",
            Self::SemiHard => {
                "Center-based semi-hard samples: still the same identity, far enough from its centre to be \
                 informative. CemiFace generates its data sets here (m = 0)."
            }
            Self::Hard => "So far from the identity centre that the face often no longer keeps the identity.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_the_range_with_the_paper_default_semi_hard() {
        assert_eq!(Regime::of(0.0), Some(Regime::SemiHard));
        assert_eq!(Regime::of(1.0), Some(Regime::Easy));
        assert_eq!(Regime::of(0.6), Some(Regime::Easy));
        assert_eq!(Regime::of(0.4), Some(Regime::Moderate));
        assert_eq!(Regime::of(0.2), Some(Regime::SemiHard));
        assert_eq!(Regime::of(-0.2), Some(Regime::SemiHard));
        assert_eq!(Regime::of(-0.21), Some(Regime::Hard));
        assert_eq!(Regime::of(-1.0), Some(Regime::Hard));
        assert_eq!(Regime::of(1.01), None);
        assert_eq!(Regime::of(f64::NAN), None);
    }
}
