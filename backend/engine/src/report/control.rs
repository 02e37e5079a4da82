//! How well a trained generator controls similarity: for held-out inquiry faces, generate at each
//! target m and measure the achieved similarity to the inquiry under several judges (the training
//! E_id and independent networks). Reports per-m means, the Spearman correlation between m and
//! achieved similarity, a plot and a contact sheet.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use candle_core::Tensor;
use image::RgbImage;
use serde::Serialize;

use crate::data::sources::tensor_image;
use crate::diffusion::generator::Generator;
use crate::identity::encoder::{cosine_rows, IdentityEncoder};
use crate::report::plot::{caption, label, Chart, Series};
use crate::Result;

/// One judge's results.
#[derive(Debug, Clone, Serialize)]
pub struct JudgeReport {
    /// Spearman rank correlation between m and achieved similarity over every generated image.
    pub spearman: f64,
    /// Mean achieved similarity per m (keys formatted like the m list).
    pub mean_by_m: BTreeMap<String, f64>,
    /// Standard deviation per m.
    pub std_by_m: BTreeMap<String, f64>,
    /// Whether the means increase strictly with m.
    pub monotonic: bool,
    /// Latent models: mean similarity of G(z_a), the inversion of the inquiry, to the inquiry: what
    /// m = 1 can reach at best.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inversion: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ControlReport {
    pub m: Vec<f32>,
    pub inquiries: Vec<String>,
    pub steps: usize,
    /// DDIM η (1: stochastic, the paper's sampler; 0: deterministic).
    pub eta: f64,
    pub seed: u64,
    /// By judge name, over every inquiry.
    pub judges: BTreeMap<String, JudgeReport>,
    /// The same per inquiry source ("photo", "dcgan"; source → judge → report): photos go through
    /// an inversion, DCGAN inquiries carry their own latent, and the two differ at m = 1.
    pub by_source: BTreeMap<String, BTreeMap<String, JudgeReport>>,
    /// Share of generated images in which the face detector finds a face, per m (empty without a
    /// detector).
    pub face_rate_by_m: BTreeMap<String, f64>,
    /// The same share for raw DCGAN samples (the baseline), when measured.
    pub baseline_face_rate: Option<f64>,
    /// Source of each inquiry ("photo", "dcgan", …), in order.
    #[serde(skip)]
    pub sources: Vec<String>,
    /// Achieved similarity [judge][inquiry][m index].
    #[serde(skip)]
    pub samples: BTreeMap<String, Vec<Vec<f32>>>,
    /// Whether the detector found a face [inquiry][m index] (empty without a detector).
    #[serde(skip)]
    pub faces: Vec<Vec<bool>>,
    /// Similarity of G(z_a) to the inquiry [judge][inquiry] (latent models).
    #[serde(skip)]
    pub inversions: BTreeMap<String, Vec<f32>>,
    /// Contact sheet: per inquiry, the inquiry face, G(z_a) for latent models, then one image per m.
    #[serde(skip)]
    pub sheet_rows: Vec<Vec<RgbImage>>,
}

/// Spearman's rank correlation (ties get their average rank).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for k in i..=j {
                r[idx[k]] = (i + j) as f64 / 2.0 + 1.0;
            }
            i = j + 1;
        }
        r
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        return f64::NAN;
    }
    cov / (vx * vy).sqrt()
}

/// One held-out inquiry.
pub struct ControlInquiry {
    pub name: String,
    /// Where it comes from ("photo", "dcgan"): the report is also split by it.
    pub source: String,
    /// (1, 3, S, S) in [−1, 1] at the generator's size.
    pub face: Tensor,
    /// The decoder latent the face was drawn from (DCGAN inquiries; latent models adopt it).
    pub latent: Option<Tensor>,
}

/// Runs the measurement. `judges[0]` must be the generator's own E_id (it makes C_id).
/// `on_inquiry(done, total)` reports progress and may stop the run early (the report then covers
/// the inquiries done).
#[allow(clippy::too_many_arguments)]
pub fn measure(
    gen: &Generator,
    judges: &[&dyn IdentityEncoder],
    inquiries: &[ControlInquiry],
    m: &[f32],
    steps: usize,
    eta: f64,
    seed: u64,
    sheet_rows: usize,
    detector: Option<&crate::face::align::FaceAligner>,
    mut on_inquiry: impl FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<ControlReport> {
    let mut faces_found = vec![0usize; m.len()];
    let mut faces = Vec::new();
    let mut samples: BTreeMap<String, Vec<Vec<f32>>> =
        judges.iter().map(|j| (j.name(), Vec::new())).collect();
    let mut inversions: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut names = Vec::new();
    let mut sources = Vec::new();
    let mut rows = Vec::new();
    for (i, q) in inquiries.iter().enumerate() {
        let face = &q.face;
        // Each judge embeds the inquiry once; the first (the generator's E_id) also gives C_id.
        let references = judges
            .iter()
            .map(|j| j.descriptors(face))
            .collect::<Result<Vec<_>>>()?;
        let c_id = crate::identity::encoder::l2_normalize(&references[0])?;
        gen.prepare_inquiry(&c_id, face, q.latent.as_ref())?;
        let seeds = vec![crate::noise::NoiseRng::derive(&[seed, i as u64]); m.len()];
        let out = gen.sample_final(&c_id, m, &seeds, steps, eta, |_| ControlFlow::Continue(()))?;
        let reconstruction = gen.inquiry_reconstruction(&c_id)?;
        if let Some(g_za) = &reconstruction {
            for (judge, reference) in judges.iter().zip(&references) {
                let s = cosine_rows(&judge.descriptors(g_za)?, reference)?.to_vec1::<f32>()?[0];
                inversions.entry(judge.name()).or_default().push(s);
            }
        }
        for (judge, reference) in judges.iter().zip(&references) {
            let target = reference
                .broadcast_as((m.len(), reference.dim(1)?))?
                .contiguous()?;
            let sims: Vec<f32> = cosine_rows(&judge.descriptors(&out)?, &target)?.to_vec1()?;
            samples
                .get_mut(&judge.name())
                .expect("one entry per judge")
                .push(sims);
        }
        if let Some(det) = detector {
            let mut row = Vec::with_capacity(m.len());
            for (k, found) in faces_found.iter_mut().enumerate() {
                let f = det.finds_face(&tensor_image(&out.get(k)?)?)?;
                *found += f as usize;
                row.push(f);
            }
            faces.push(row);
        }
        if rows.len() < sheet_rows {
            let mut row = vec![tensor_image(&face.squeeze(0)?)?];
            if let Some(g_za) = &reconstruction {
                row.push(tensor_image(&g_za.squeeze(0)?)?);
            }
            for k in 0..m.len() {
                row.push(tensor_image(&out.get(k)?)?);
            }
            rows.push(row);
        }
        names.push(q.name.clone());
        sources.push(q.source.clone());
        if on_inquiry(i + 1, inquiries.len()).is_break() {
            break;
        }
    }
    let all: Vec<bool> = vec![true; names.len()];
    let judges = summarise(&samples, &inversions, m, &all);
    let mut by_source = BTreeMap::new();
    for source in sources.iter().collect::<std::collections::BTreeSet<_>>() {
        let rows: Vec<bool> = sources.iter().map(|s| s == source).collect();
        by_source.insert(source.clone(), summarise(&samples, &inversions, m, &rows));
    }
    let key = |v: f32| format!("{v}");
    let face_rate_by_m = match detector {
        Some(_) => m
            .iter()
            .zip(&faces_found)
            .map(|(&mk, &f)| (key(mk), f as f64 / names.len().max(1) as f64))
            .collect(),
        None => BTreeMap::new(),
    };
    Ok(ControlReport {
        m: m.to_vec(),
        face_rate_by_m,
        baseline_face_rate: None,
        inquiries: names,
        sources,
        by_source,
        steps,
        eta,
        seed,
        judges,
        samples,
        faces,
        inversions,
        sheet_rows: rows,
    })
}

/// Per judge: Spearman, means and spreads by m over the inquiries `rows` selects.
fn summarise(
    samples: &BTreeMap<String, Vec<Vec<f32>>>,
    inversions: &BTreeMap<String, Vec<f32>>,
    m: &[f32],
    rows: &[bool],
) -> BTreeMap<String, JudgeReport> {
    let picked = |v: &[Vec<f32>]| -> Vec<Vec<f32>> {
        v.iter()
            .zip(rows)
            .filter(|(_, &k)| k)
            .map(|(s, _)| s.clone())
            .collect()
    };
    samples
        .iter()
        .map(|(judge, per)| {
            let per = picked(per);
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            let mut mean_by_m = BTreeMap::new();
            let mut std_by_m = BTreeMap::new();
            let mut means = Vec::new();
            for (k, &mk) in m.iter().enumerate() {
                let v: Vec<f64> = per.iter().map(|s| s[k] as f64).collect();
                let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
                let var = v.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / v.len().max(1) as f64;
                xs.extend(std::iter::repeat_n(mk as f64, v.len()));
                ys.extend(v);
                mean_by_m.insert(format!("{mk}"), mean);
                std_by_m.insert(format!("{mk}"), var.sqrt());
                means.push((mk, mean));
            }
            means.sort_by(|a, b| a.0.total_cmp(&b.0));
            let monotonic = means.windows(2).all(|w| w[1].1 > w[0].1);
            let inversion = inversions.get(judge).map(|v| {
                let v: Vec<f64> = v
                    .iter()
                    .zip(rows)
                    .filter(|(_, &k)| k)
                    .map(|(&s, _)| s as f64)
                    .collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            });
            (
                judge.clone(),
                JudgeReport {
                    spearman: spearman(&xs, &ys),
                    mean_by_m,
                    std_by_m,
                    monotonic,
                    inversion,
                },
            )
        })
        .collect()
}

impl ControlReport {
    /// Every sample, for plots and analyses of one's own: m, the inquiries and their sources, the
    /// achieved similarity [judge][inquiry][m index], G(z_a)'s similarity [judge][inquiry] and
    /// whether the detector found a face [inquiry][m index].
    pub fn samples_json(&self) -> serde_json::Value {
        serde_json::json!({
            "m": self.m,
            "inquiries": self.inquiries,
            "sources": self.sources,
            "similarity": self.samples,
            "inversion": self.inversions,
            "face_found": self.faces,
        })
    }

    /// Mean achieved similarity against m, one line per judge, with the ideal y = m.
    pub fn plot(&self) -> Chart {
        let mut ms = self.m.clone();
        ms.sort_by(f32::total_cmp);
        let mut series = vec![Series {
            label: "target (y = m)".into(),
            points: ms.iter().map(|&v| (v as f64, v as f64)).collect(),
        }];
        for (name, j) in &self.judges {
            series.push(Series {
                label: format!("{name} (spearman {:.2})", j.spearman),
                points: ms
                    .iter()
                    .map(|&v| (v as f64, j.mean_by_m[&format!("{v}")]))
                    .collect(),
            });
        }
        Chart {
            title: format!(
                "achieved similarity vs target m ({} inquiries)",
                self.inquiries.len()
            ),
            x_label: "target m".into(),
            y_label: "mean cosine similarity".into(),
            series,
            x_range: Some((-1.0, 1.0)),
            y_range: Some((-1.0, 1.0)),
            x_markers: Vec::new(),
        }
    }

    /// The contact sheet: one row per inquiry (its name on the left, the inquiry, then m left to
    /// right as given), with the columns captioned on top.
    pub fn contact_sheet(&self) -> RgbImage {
        let Some(first) = self.sheet_rows.first().and_then(|r| r.first()) else {
            return RgbImage::new(1, 1);
        };
        let (s, gap, head, left) = (first.width(), 4, 22, 104);
        let cols = self.sheet_rows[0].len() as u32;
        let mut sheet = RgbImage::from_pixel(
            left + cols * (s + gap) + gap,
            head + self.sheet_rows.len() as u32 * (s + gap) + gap,
            image::Rgb([255, 255, 255]),
        );
        let ink = [40, 40, 40];
        let col_x = |c: u32| left + gap + c * (s + gap);
        caption(&mut sheet, col_x(0) as i32, 4, "inquiry", 13, ink);
        // Latent models add G(z_a), the inquiry as the decoder draws it, before the m columns.
        let lead = if self.inversions.is_empty() { 1 } else { 2 };
        if lead == 2 {
            caption(&mut sheet, col_x(1) as i32, 4, "G(z_a)", 13, ink);
        }
        for (c, m) in self.m.iter().enumerate().take(cols.saturating_sub(lead) as usize) {
            caption(
                &mut sheet,
                col_x(c as u32 + lead) as i32,
                4,
                &format!("m = {}", label(*m as f64)),
                13,
                ink,
            );
        }
        for (r, row) in self.sheet_rows.iter().enumerate() {
            let y = head + gap + r as u32 * (s + gap);
            let name = self
                .inquiries
                .get(r)
                .map(|n| short_name(n, 15))
                .unwrap_or_default();
            caption(&mut sheet, 4, (y + s / 2) as i32 - 7, &name, 12, ink);
            for (c, img) in row.iter().enumerate() {
                image::imageops::replace(&mut sheet, img, col_x(c as u32) as i64, y as i64);
            }
        }
        sheet
    }
}

/// An inquiry's name for a caption: without a file extension, at most `max` characters (… marks a cut).
fn short_name(name: &str, max: usize) -> String {
    let stem = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 4 => stem,
        _ => name,
    };
    if stem.chars().count() <= max {
        stem.to_owned()
    } else {
        stem.chars().take(max - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{short_name, spearman, summarise};
    use std::collections::BTreeMap;

    #[test]
    fn a_summary_covers_only_the_selected_inquiries() {
        // Two inquiries of one source follow m, one of another source does not.
        let m = [0.0f32, 1.0];
        let samples = BTreeMap::from([(
            "judge".to_string(),
            vec![vec![0.1, 0.9], vec![0.2, 0.7], vec![0.5, 0.3]],
        )]);
        let inversions = BTreeMap::from([("judge".to_string(), vec![1.0, 1.0, 0.6])]);
        let dcgan = summarise(&samples, &inversions, &m, &[true, true, false]);
        let photo = summarise(&samples, &inversions, &m, &[false, false, true]);
        let (d, p) = (&dcgan["judge"], &photo["judge"]);
        assert!((d.mean_by_m["0"] - 0.15).abs() < 1e-6 && (d.mean_by_m["1"] - 0.8).abs() < 1e-6);
        assert!(d.monotonic && (d.spearman - 0.894_427_190_999_915_9).abs() < 1e-9);
        assert_eq!((d.inversion, p.inversion), (Some(1.0), Some(0.6000000238418579)));
        assert!(!p.monotonic && (p.mean_by_m["1"] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn caption_names_drop_the_extension_and_mark_cuts() {
        assert_eq!(short_name("photo_obama2.jpg", 15), "photo_obama2");
        assert_eq!(short_name("dcgan_000004", 15), "dcgan_000004");
        assert_eq!(short_name("a_very_long_identity_name.png", 10), "a_very_lo…");
    }

    #[test]
    fn spearman_matches_hand_computed_values() {
        assert!((spearman(&[1., 2., 3., 4.], &[10., 20., 30., 40.]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1., 2., 3., 4.], &[4., 3., 2., 1.]) + 1.0).abs() < 1e-12);
        // numpy: corrcoef of the average ranks of [1,2,3,4,5] and [2,1,4,3,5] = 0.8
        assert!((spearman(&[1., 2., 3., 4., 5.], &[2., 1., 4., 3., 5.]) - 0.8).abs() < 1e-12);
        // With ties (average ranks), the same way: [1,1,2,2] vs [1,2,3,4] = 0.894427...
        assert!((spearman(&[1., 1., 2., 2.], &[1., 2., 3., 4.]) - 0.894_427_190_999_915_9).abs() < 1e-12);
        assert!(spearman(&[1., 1.], &[1., 2.]).is_nan());
    }
}
