//! Helpers shared by the engine's integration tests.

use std::path::PathBuf;

/// The assets folder when `needed` (a path under it) is installed; `None` (test skipped) otherwise,
/// which `CEMIFACE_REQUIRE_ASSETS` turns into a failure.
pub fn assets_with(needed: &[&str]) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets");
    if needed.iter().all(|p| dir.join(p).exists()) {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CEMIFACE_REQUIRE_ASSETS").is_none(),
        "assets missing: run scripts/setup.sh"
    );
    eprintln!("skipped: assets not installed");
    None
}
