//! Helpers shared by the engine's integration tests.

use std::path::PathBuf;

/// The assets folder when `needed` (paths under it) is installed. Missing assets fail the test
/// (`scripts/setup.sh --assets-only` installs them) unless `CEMIFACE_SKIP_MISSING_ASSETS=1`, which
/// skips it (`None`).
pub fn assets_with(needed: &[&str]) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    if needed.iter().all(|p| dir.join(p).exists()) {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CEMIFACE_SKIP_MISSING_ASSETS").is_some(),
        "assets missing: run scripts/setup.sh"
    );
    eprintln!("skipped: assets not installed");
    None
}
