//! What the admin pages and the job runner agree on about a job's outputs (shared by server and
//! browser, like `demo_protocol`).

/// The similarity targets of a training job's sample grid, one column each after the inquiry
/// column; its rows are held-out DCGAN identities (the same at every checkpoint).
pub const SAMPLE_GRID_M: [f32; 3] = [-1.0, 0.0, 1.0];

/// Column labels of a training sample grid, left to right.
pub fn sample_grid_columns() -> Vec<String> {
    std::iter::once("inquiry".to_owned())
        .chain(SAMPLE_GRID_M.iter().map(|m| format!("m = {m:+.0}")))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_label_per_column() {
        assert_eq!(super::sample_grid_columns(), ["inquiry", "m = -1", "m = +0", "m = +1"]);
    }
}
