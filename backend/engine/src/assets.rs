//! The pinned model assets (`assets.lock` at the repository root) and their presence on disk.
//!
//! `scripts/setup.sh` fetches every file of the lock with the ordinary package clients and checks its
//! sha256; this module reads the same lock so the server and the CLI can say which assets are installed
//! (present with the pinned checksum), which are missing and which are corrupt.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The lock file compiled into the binary, so a build always knows what it expects.
pub const ASSETS_LOCK: &str = include_str!("../../../assets.lock");

/// One pinned file: where it comes from and where it lands under the assets folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetFile {
    /// Logical group, e.g. `dlib-resnet` (several files form one usable asset).
    pub group: String,
    /// Package it is taken from, e.g. `npm:@vladmandic/face-api@1.7.15`.
    pub source: String,
    /// Path of the file inside the package archive.
    pub member: String,
    /// Path relative to the assets folder.
    pub dest: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
}

/// Parses lock text: `group source member dest sha256` per line, `#` comments, blank lines ignored.
pub fn parse_lock(text: &str) -> Result<Vec<AssetFile>> {
    let mut files = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| Error::AssetsLock { line: i + 1, message };
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [group, source, member, dest, sha256] = cols[..] else {
            return Err(bad(format!("expected 5 columns, found {}", cols.len())));
        };
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad(format!("`{sha256}` is not a lower-case hex sha256")));
        }
        let known = ["npm:", "pypi-sdist:", "pypi-wheel:"];
        if !known.iter().any(|p| source.starts_with(p)) {
            return Err(bad(format!(
                "unknown source `{source}` (expected one of {known:?})"
            )));
        }
        if dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
            return Err(bad(format!(
                "destination `{dest}` must stay inside the assets folder"
            )));
        }
        if files.iter().any(|f: &AssetFile| f.dest == dest) {
            return Err(bad(format!("destination `{dest}` is listed twice")));
        }
        files.push(AssetFile {
            group: group.into(),
            source: source.into(),
            member: member.into(),
            dest: dest.into(),
            sha256: sha256.into(),
        });
    }
    Ok(files)
}

/// The assets this build was compiled against.
pub fn pinned() -> Vec<AssetFile> {
    parse_lock(ASSETS_LOCK).expect("assets.lock is checked by the engine's tests")
}

/// State of one file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Present with the pinned checksum.
    Ok,
    /// Not there.
    Missing,
    /// There, but its checksum differs from the pin (truncated, edited, other version).
    Corrupt,
}

impl FileState {
    /// The lower-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Corrupt => "corrupt",
        }
    }
}

/// State of one asset group (all of its files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// `true` when every file of the group is present with its pinned checksum.
    pub present: bool,
    /// Package the group comes from.
    pub source: String,
    /// Each file, by destination path, with its state.
    pub files: BTreeMap<String, FileState>,
}

/// Checks every pinned file under `dir`, hashing each one (about 40 MB, well under a second).
pub fn check(dir: &Path, files: &[AssetFile]) -> Result<BTreeMap<String, GroupStatus>> {
    Verifier::default().check(dir, files)
}

/// Repeated checks that re-hash a file only when its size or modification time changed, so a
/// health endpoint can report exact checksum state on every request for the price of a `stat`.
#[derive(Debug, Default)]
pub struct Verifier {
    seen: HashMap<PathBuf, (u64, Option<SystemTime>, bool)>,
}

impl Verifier {
    /// Like [`check`], reusing hashes of unchanged files.
    pub fn check(&mut self, dir: &Path, files: &[AssetFile]) -> Result<BTreeMap<String, GroupStatus>> {
        let mut groups: BTreeMap<String, GroupStatus> = BTreeMap::new();
        for f in files {
            let state = self.file_state(&dir.join(&f.dest), &f.sha256)?;
            let g = groups.entry(f.group.clone()).or_insert_with(|| GroupStatus {
                present: true,
                source: f.source.clone(),
                files: BTreeMap::new(),
            });
            g.present &= state == FileState::Ok;
            g.files.insert(f.dest.clone(), state);
        }
        Ok(groups)
    }

    fn file_state(&mut self, path: &Path, sha256: &str) -> Result<FileState> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.seen.remove(path);
                return Ok(FileState::Missing);
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let key = (meta.len(), meta.modified().ok());
        let ok = match self.seen.get(path) {
            Some(&(len, mtime, ok)) if (len, mtime) == key => ok,
            _ => {
                let ok = sha256_file(path)? == sha256;
                self.seen.insert(path.to_path_buf(), (key.0, key.1, ok));
                ok
            }
        };
        Ok(if ok { FileState::Ok } else { FileState::Corrupt })
    }
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cemiface-assets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_shipped_lock_parses_and_names_every_required_group() {
        let files = parse_lock(ASSETS_LOCK).unwrap();
        for group in [
            "dlib-resnet",
            "tiny-face-detector",
            "face-landmark-68",
            "dcgan-faces",
            "test-photos",
            "mobileface",
        ] {
            assert!(
                files.iter().any(|f| f.group == group),
                "assets.lock lacks {group}"
            );
        }
        let recog = files
            .iter()
            .find(|f| f.dest.ends_with("face_recognition_model.bin"))
            .unwrap();
        assert_eq!(
            recog.sha256,
            "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"
        );
    }

    #[test]
    fn malformed_lines_are_rejected_with_their_line_number() {
        let err = parse_lock("# c\n\ng npm:x@1 a b\n").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("5 columns"), "{err}");
        let err = parse_lock("g npm:x@1 a b ABC").unwrap_err().to_string();
        assert!(err.contains("sha256"), "{err}");
        let sha = "0".repeat(64);
        let err = parse_lock(&format!("g ftp:x a b {sha}")).unwrap_err().to_string();
        assert!(err.contains("unknown source"), "{err}");
        let err = parse_lock(&format!("g npm:x a ../b {sha}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("inside the assets folder"), "{err}");
        let twice = format!("g npm:x a b {sha}\ng npm:x c b {sha}");
        assert!(parse_lock(&twice).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn sha256_matches_the_known_digest() {
        let dir = temp_dir("sha");
        let p = dir.join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn check_reports_ok_missing_and_corrupt_files_per_group() {
        let dir = temp_dir("check");
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; // "abc"
        let lock = format!(
            "a npm:p@1 m1 a/one {good}\na npm:p@1 m2 a/two {good}\nb pypi-wheel:q==1 m3 b/three {good}\n"
        );
        let files = parse_lock(&lock).unwrap();
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("a/one"), b"abc").unwrap();
        std::fs::write(dir.join("a/two"), b"ab").unwrap(); // truncated
        std::fs::write(dir.join("b/three"), b"abc").unwrap();
        let status = check(&dir, &files).unwrap();
        assert!(!status["a"].present);
        assert_eq!(status["a"].files["a/one"], FileState::Ok);
        assert_eq!(status["a"].files["a/two"], FileState::Corrupt);
        assert!(status["b"].present);
        std::fs::remove_file(dir.join("b/three")).unwrap();
        let status = check(&dir, &files).unwrap();
        assert_eq!(status["b"].files["b/three"], FileState::Missing);
        assert!(!status["b"].present);
    }

    #[test]
    fn verifier_rehashes_only_changed_files_and_sees_every_change() {
        let dir = temp_dir("verifier");
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; // "abc"
        let files = parse_lock(&format!("a npm:p@1 m f {good}")).unwrap();
        let mut v = Verifier::default();
        let state = |v: &mut Verifier| v.check(&dir, &files).unwrap()["a"].files["f"];
        assert_eq!(state(&mut v), FileState::Missing);
        std::fs::write(dir.join("f"), b"abc").unwrap();
        assert_eq!(state(&mut v), FileState::Ok);
        assert_eq!(state(&mut v), FileState::Ok); // cached
        std::fs::write(dir.join("f"), b"abcd").unwrap(); // size changes: re-hashed
        assert_eq!(state(&mut v), FileState::Corrupt);
        std::fs::remove_file(dir.join("f")).unwrap();
        assert_eq!(state(&mut v), FileState::Missing);
    }
}
