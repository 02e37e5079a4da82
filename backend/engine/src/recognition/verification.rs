//! Face verification accuracy as insightface's `eval/verification.py` computes it (docs/paper.md §5):
//! squared L2 distance between L2-normalised embeddings, thresholds 0, 0.01, …, 3.99, contiguous
//! 10-fold split (`KFold(10, shuffle=False)`), the threshold that is best on the nine training folds
//! (first maximum) scored on the held-out fold; mean and population std over folds.

use serde::Serialize;

use crate::{Error, Result};

/// The result over all folds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub accuracy: f64,
    pub std: f64,
    /// Mean of the per-fold best thresholds (squared L2 on unit vectors, in [0, 4)).
    pub threshold: f64,
    pub fold_accuracies: Vec<f64>,
}

fn normalized(v: &[f32]) -> Vec<f64> {
    let n = v
        .iter()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    v.iter().map(|x| *x as f64 / n).collect()
}

/// Squared L2 distance of the normalised vectors of each pair.
pub fn pair_distances(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            normalized(x)
                .iter()
                .zip(normalized(y))
                .map(|(p, q)| (p - q).powi(2))
                .sum()
        })
        .collect()
}

fn accuracy(threshold: f64, dist: &[f64], same: &[bool], idx: &[usize]) -> f64 {
    let correct = idx.iter().filter(|&&i| (dist[i] < threshold) == same[i]).count();
    correct as f64 / idx.len() as f64
}

/// `folds`-fold verification of pairs (a[i], b[i]) labelled `same[i]`.
pub fn verify(a: &[Vec<f32>], b: &[Vec<f32>], same: &[bool], folds: usize) -> Result<Verification> {
    let n = same.len();
    if a.len() != n || b.len() != n {
        return Err(Error::Config(format!(
            "{} / {} embeddings for {n} pairs",
            a.len(),
            b.len()
        )));
    }
    if folds < 2 || n < folds {
        return Err(Error::Config(format!(
            "{n} pairs cannot be split into {folds} folds"
        )));
    }
    let dist = pair_distances(a, b);
    let thresholds: Vec<f64> = (0..400).map(|i| i as f64 * 0.01).collect();
    let mut start = 0;
    let (mut accs, mut ths) = (Vec::new(), Vec::new());
    for f in 0..folds {
        let size = n / folds + usize::from(f < n % folds);
        let test: Vec<usize> = (start..start + size).collect();
        let train: Vec<usize> = (0..n).filter(|i| !(start..start + size).contains(i)).collect();
        start += size;
        let mut best = (0usize, -1.0);
        for (k, &t) in thresholds.iter().enumerate() {
            let acc = accuracy(t, &dist, same, &train);
            if acc > best.1 {
                best = (k, acc);
            }
        }
        let t = thresholds[best.0];
        ths.push(t);
        accs.push(accuracy(t, &dist, same, &test));
    }
    let mean = accs.iter().sum::<f64>() / folds as f64;
    let std = (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / folds as f64).sqrt();
    Ok(Verification {
        accuracy: mean,
        std,
        threshold: ths.iter().sum::<f64>() / folds as f64,
        fold_accuracies: accs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/golden/verification.json")).unwrap()
    }

    fn vectors(v: &serde_json::Value) -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn matches_the_numpy_reimplementation_of_insightface() {
        let g = golden();
        let same: Vec<bool> = g["issame"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let r = verify(&vectors(&g["a"]), &vectors(&g["b"]), &same, 10).unwrap();
        assert!(
            (r.accuracy - g["accuracy"].as_f64().unwrap()).abs() < 1e-9,
            "{r:?}"
        );
        assert!((r.std - g["std"].as_f64().unwrap()).abs() < 1e-9);
        assert!((r.threshold - g["threshold"].as_f64().unwrap()).abs() < 1e-9);
        for (x, y) in r
            .fold_accuracies
            .iter()
            .zip(g["fold_accuracies"].as_array().unwrap())
        {
            assert!((x - y.as_f64().unwrap()).abs() < 1e-9);
        }
    }

    #[test]
    fn perfect_separation_and_bad_inputs() {
        let same: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
        let a: Vec<Vec<f32>> = (0..20).map(|_| vec![1.0, 0.0]).collect();
        let b: Vec<Vec<f32>> = same
            .iter()
            .map(|&s| if s { vec![1.0, 0.1] } else { vec![-1.0, 0.2] })
            .collect();
        let r = verify(&a, &b, &same, 10).unwrap();
        assert_eq!((r.accuracy, r.std), (1.0, 0.0));
        assert!(verify(&a, &b[..5], &same, 10).is_err());
        assert!(verify(&a[..5], &b[..5], &same[..5], 10)
            .unwrap_err()
            .to_string()
            .contains("10 folds"));
    }
}
