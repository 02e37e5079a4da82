//! Helpers shared by the server's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh, empty folder under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cemiface-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Repository root (the workspace), from this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The pinned assets, or `None` when they are not installed (allowed only outside CI:
/// `CEMIFACE_REQUIRE_ASSETS` makes their absence a failure).
pub fn assets() -> Option<PathBuf> {
    let assets = repo_root().join("assets");
    if assets.join("gan-face-generate/weights.tar").exists() {
        Some(assets)
    } else {
        assert!(
            std::env::var_os("CEMIFACE_REQUIRE_ASSETS").is_none(),
            "run scripts/setup.sh"
        );
        None
    }
}

/// The demo-64 preset shrunk to 32×32 and a few channels: trains a step in about a second (the
/// same file the browser tests' server is trained from).
pub fn tiny_config() -> String {
    include_str!("../../../../end2end/fixtures/tiny-generator.toml").to_owned()
}

/// A tiny generator trained for one step with `cemiface train-diffusion`: its run folder.
pub fn tiny_generator(dir: &std::path::Path, assets: &std::path::Path) -> PathBuf {
    std::fs::write(dir.join("tiny.toml"), tiny_config()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cemiface"))
        .arg("train-diffusion")
        .arg("--config")
        .arg(dir.join("tiny.toml"))
        .arg("--run-dir")
        .arg(dir.join("gen-run"))
        .arg("--assets-dir")
        .arg(assets)
        .args(["--max-steps", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("gen-run")
}
