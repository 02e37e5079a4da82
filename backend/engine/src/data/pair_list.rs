//! Verification pairs over an image folder (LFW's `pairs.txt` idea, simplified): one pair per line,
//! `<image a> <image b> <1 same | 0 different>`, paths relative to the list's folder, `#` comments.
//! The images are aligned square crops, as in insightface `.bin` sets.

use std::path::{Path, PathBuf};

use crate::data::insightface_bin::PairSet;
use crate::{Error, Result};

/// Parses a pair list; errors name the line.
pub fn parse(text: &str, base: &Path, name: &Path) -> Result<Vec<(PathBuf, PathBuf, bool)>> {
    let bad = |n: usize, m: String| Error::Format {
        path: name.to_path_buf(),
        message: format!("line {}: {m}", n + 1),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [a, b, same] = parts[..] else {
            return Err(bad(
                n,
                format!(
                    "expected `<image a> <image b> <0|1>`, found {} fields",
                    parts.len()
                ),
            ));
        };
        let same = match same {
            "1" | "true" | "same" => true,
            "0" | "false" | "different" => false,
            s => return Err(bad(n, format!("`{s}` is not 0 or 1"))),
        };
        out.push((base.join(a), base.join(b), same));
    }
    if out.is_empty() {
        return Err(Error::Format {
            path: name.to_path_buf(),
            message: "no pairs".into(),
        });
    }
    Ok(out)
}

/// Reads a pair list and its images into a [`PairSet`].
pub fn read(path: &Path) -> Result<PairSet> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut set = PairSet {
        images: Vec::new(),
        same: Vec::new(),
    };
    for (a, b, same) in parse(&text, base, path)? {
        for p in [a, b] {
            set.images.push(std::fs::read(&p).map_err(|e| Error::io(&p, e))?);
        }
        set.same.push(same);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_errors_name_the_line() {
        let text = "# a comment\nx/1.png y/2.png 1\n\nx/1.png z.png 0\n";
        let p = parse(text, Path::new("/d"), Path::new("pairs.txt")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            (PathBuf::from("/d/x/1.png"), PathBuf::from("/d/y/2.png"), true)
        );
        assert!(!p[1].2);
        let err = parse("a b\n", Path::new("/d"), Path::new("pairs.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pairs.txt: line 1") && err.contains("2 fields"),
            "{err}"
        );
        let err = parse("a b maybe", Path::new("/d"), Path::new("p.txt"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`maybe` is not 0 or 1"), "{err}");
    }
}
