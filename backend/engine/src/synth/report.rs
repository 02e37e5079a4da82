//! The summary of a generated data set: achieved similarity per target m (mean, spread and a
//! histogram, as JSON and as a PNG chart), the merged manifest, and the insightface RecordIO export.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::recordio::RecordWriter;
use crate::report::plot::{Chart, Series};
use crate::synth::generation::{write_atomic, DatasetDir, ManifestEntry};
use crate::{Error, Result};

/// Histogram bins over cosine similarity [−1, 1].
pub const BINS: usize = 40;

/// Statistics of the achieved similarity at one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MStats {
    pub count: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Counts per bin of width 2/BINS from −1.
    pub histogram: Vec<usize>,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub identities: usize,
    pub images: usize,
    pub inquiry_copies: usize,
    /// Keyed by the target formatted with two decimals ("0.00"); copies of inquiries under "inquiry".
    pub by_m: BTreeMap<String, MStats>,
}

/// The key of a target in [`Report::by_m`].
pub fn m_key(m: Option<f32>) -> String {
    match m {
        Some(m) => format!("{:.2}", m + 0.0),
        None => "inquiry".into(),
    }
}

fn stats(values: &[f64]) -> MStats {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let mut histogram = vec![0; BINS];
    for v in values {
        let b = (((v + 1.0) / 2.0 * BINS as f64).floor() as isize).clamp(0, BINS as isize - 1);
        histogram[b as usize] += 1;
    }
    MStats {
        count: values.len(),
        mean,
        std: var.sqrt(),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        histogram,
    }
}

/// Summarises a manifest.
pub fn report(entries: &[ManifestEntry]) -> Report {
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in entries {
        groups.entry(m_key(e.m)).or_default().push(e.similarity as f64);
    }
    Report {
        identities: entries.iter().map(|e| e.identity).max().map_or(0, |m| m + 1),
        images: entries.len(),
        inquiry_copies: entries.iter().filter(|e| e.m.is_none()).count(),
        by_m: groups.iter().map(|(k, v)| (k.clone(), stats(v))).collect(),
    }
}

/// The histogram chart: one curve per target (fraction of images per bin), the targets dashed.
pub fn histogram_chart(report: &Report, encoder: &str) -> Chart {
    let mut chart = Chart {
        title: format!("achieved similarity per target m ({encoder})"),
        x_label: "cosine similarity to the inquiry".into(),
        y_label: "fraction".into(),
        x_range: Some((-1.0, 1.0)),
        ..Default::default()
    };
    for (key, s) in report.by_m.iter().filter(|(k, _)| k.as_str() != "inquiry") {
        let w = 2.0 / BINS as f64;
        let mut points = Vec::with_capacity(2 * BINS);
        for (b, &c) in s.histogram.iter().enumerate() {
            let y = c as f64 / s.count as f64;
            points.push((-1.0 + b as f64 * w, y));
            points.push((-1.0 + (b + 1) as f64 * w, y));
        }
        chart.series.push(Series {
            label: format!("m={key} mean {:.2}", s.mean),
            points,
        });
        chart.x_markers.push(key.parse().unwrap_or(0.0));
    }
    chart
}

/// Writes manifest.jsonl, report.json and similarity_histogram.png (and .svg).
pub fn write_summary(dir: &DatasetDir, entries: &[ManifestEntry], encoder: &str) -> Result<Report> {
    let mut lines = String::new();
    for e in entries {
        lines.push_str(&serde_json::to_string(e).expect("plain data"));
        lines.push('\n');
    }
    write_atomic(&dir.root.join("manifest.jsonl"), lines.as_bytes())?;
    let r = report(entries);
    let json = serde_json::to_string_pretty(&r).expect("plain data");
    write_atomic(&dir.root.join("report.json"), json.as_bytes())?;
    let chart = histogram_chart(&r, encoder);
    write_atomic(
        &dir.root.join("similarity_histogram.png"),
        &crate::synth::generation::encode(
            &chart.render(800, 480),
            crate::synth::generation::ImageFormat::Png,
        )?,
    )?;
    write_atomic(
        &dir.root.join("similarity_histogram.svg"),
        chart.render_svg(800, 480).as_bytes(),
    )?;
    Ok(r)
}

/// Packs the data set as insightface `train.rec` / `train.idx`: header record 0 with labels
/// [K+1, K+1+identities], images 1..=K labelled with their identity, then one record per identity
/// whose labels are its image-key range [start, end).
pub fn write_recordio(dir: &DatasetDir, entries: &[ManifestEntry]) -> Result<()> {
    let rec = dir.root.join("train.rec");
    let tmp = dir.root.join("train.tmp.rec");
    let k = entries.len() as u64;
    let ids = entries.iter().map(|e| e.identity).max().map_or(0, |m| m + 1);
    let mut w = RecordWriter::create(&tmp)?;
    w.write(0, 0.0, &[(k + 1) as f32, (k + 1 + ids as u64) as f32], &[])?;
    let mut ranges = vec![(u64::MAX, 0u64); ids];
    for (i, e) in entries.iter().enumerate() {
        let key = i as u64 + 1;
        let p = dir.root.join(&e.file);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        w.write(key, e.identity as f32, &[], &bytes)?;
        let r = &mut ranges[e.identity];
        *r = (r.0.min(key), r.1.max(key + 1));
    }
    for (id, (start, end)) in ranges.iter().enumerate() {
        w.write(k + 1 + id as u64, 0.0, &[*start as f32, *end as f32], &[])?;
    }
    drop(w);
    std::fs::rename(tmp.with_extension("idx"), rec.with_extension("idx")).map_err(|e| Error::io(&rec, e))?;
    std::fs::rename(&tmp, &rec).map_err(|e| Error::io(&rec, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(identity: usize, m: Option<f32>, similarity: f32) -> ManifestEntry {
        ManifestEntry {
            identity,
            name: format!("id{identity}"),
            file: String::new(),
            m,
            seed: None,
            similarity,
        }
    }

    #[test]
    fn statistics_per_target() {
        let e = vec![
            entry(0, Some(0.0), 0.125),
            entry(0, Some(0.0), -0.125),
            entry(1, Some(0.5), 0.5),
            entry(1, None, 0.99),
        ];
        let r = report(&e);
        assert_eq!((r.identities, r.images, r.inquiry_copies), (2, 4, 1));
        let z = &r.by_m["0.00"];
        assert!(
            (z.mean - 0.0).abs() < 1e-6 && (z.std - 0.125).abs() < 1e-6,
            "{z:?}"
        );
        assert_eq!(z.histogram.iter().sum::<usize>(), 2);
        assert_eq!(z.histogram[BINS / 2 - 3] + z.histogram[BINS / 2 + 2], 2); // −0.125 and 0.125
        assert_eq!(r.by_m["0.50"].histogram[30], 1);
        assert_eq!(m_key(Some(-0.0)), "0.00");
        let chart = histogram_chart(&r, "dlib");
        assert_eq!(chart.series.len(), 2);
        assert_eq!(chart.x_markers, vec![0.0, 0.5]);
    }
}
