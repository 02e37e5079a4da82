//! `scripts/setup.sh --assets-only`: verified installs, idempotence, and nothing half-written on failure.
//! Uses the npm registry (the face-api package, usually already in npm's cache).

mod common;

use std::path::Path;
use std::process::{Command, Output};

const LICENSE_SHA: &str = "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a";

fn setup(lock: &str, assets: &Path) -> Output {
    let lock_path = assets.with_extension("lock");
    std::fs::write(&lock_path, lock).unwrap();
    Command::new("bash")
        .arg(common::repo_root().join("scripts/setup.sh"))
        .arg("--assets-only")
        .env("CEMIFACE_ASSETS_LOCK", &lock_path)
        .env("CEMIFACE_ASSETS_DIR", assets)
        .output()
        .unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn installs_verified_files_and_skips_them_the_second_time() {
    let assets = common::temp_dir("setup-ok").join("assets");
    let lock =
        format!("lic npm:@vladmandic/face-api@1.7.15 package/LICENSE face-api/LICENSE {LICENSE_SHA}\n");
    let out = setup(&lock, &assets);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(assets.join("face-api/LICENSE"))
        .unwrap()
        .contains("MIT License"));
    assert_eq!(
        files_under(&assets).len(),
        1,
        "staging left behind: {:?}",
        files_under(&assets)
    );

    let again = setup(&lock, &assets);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("present and verified"));
}

#[test]
fn a_wrong_checksum_stops_setup_and_writes_nothing() {
    let assets = common::temp_dir("setup-bad-sha").join("assets");
    let wrong = "0".repeat(64);
    let lock = format!("lic npm:@vladmandic/face-api@1.7.15 package/LICENSE face-api/LICENSE {wrong}\n");
    let out = setup(&lock, &assets);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains(LICENSE_SHA),
        "{err}"
    );
    assert!(
        files_under(&assets).is_empty(),
        "left behind: {:?}",
        files_under(&assets)
    );
}

#[test]
fn a_failed_download_stops_setup_and_writes_nothing() {
    let assets = common::temp_dir("setup-404").join("assets");
    let lock =
        format!("x npm:@vladmandic/face-api@0.0.0-no-such-version package/LICENSE a/LICENSE {LICENSE_SHA}\n");
    let out = setup(&lock, &assets);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not download npm:@vladmandic/face-api@0.0.0-no-such-version"),
        "{err}"
    );
    assert!(
        files_under(&assets).is_empty(),
        "left behind: {:?}",
        files_under(&assets)
    );
}
