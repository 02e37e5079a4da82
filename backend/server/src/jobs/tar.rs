//! A ustar archive written on the fly (the data set download): a 512-byte header per file, the
//! file's bytes padded to 512, and two zero blocks at the end. Sizes are known up front, so the
//! response carries a Content-Length.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One member: its name inside the archive and the file it comes from.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Files under `root`, sorted, named `prefix/<relative path>`; `skip` filters relative paths out.
pub fn members(root: &Path, prefix: &str, skip: impl Fn(&str) -> bool) -> std::io::Result<Vec<Member>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                if !skip(&rel) {
                    out.push(Member {
                        name: format!("{prefix}/{rel}"),
                        path: e.path(),
                        size: e.metadata()?.len(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn padded(n: u64) -> u64 {
    n.div_ceil(512) * 512
}

/// Bytes of the whole archive.
pub fn archive_len(members: &[Member]) -> u64 {
    members.iter().map(|m| 512 + padded(m.size)).sum::<u64>() + 1024
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}", w = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// The header block of a regular file.
pub fn header(name: &str, size: u64, mtime: u64) -> std::io::Result<[u8; 512]> {
    let mut h = [0u8; 512];
    let bytes = name.as_bytes();
    let (prefix, base) = if bytes.len() <= 100 {
        (&b""[..], bytes)
    } else {
        // Split at a '/' so the prefix fits 155 bytes and the rest 100.
        let cut = (0..bytes.len())
            .rev()
            .find(|&i| bytes[i] == b'/' && i <= 155 && bytes.len() - i - 1 <= 100)
            .ok_or_else(|| std::io::Error::other(format!("{name}: path too long for a tar header")))?;
        (&bytes[..cut], &bytes[cut + 1..])
    };
    h[..base.len()].copy_from_slice(base);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Sends the first `size` bytes of `path` in chunks of at most 64 KiB; false when `send` gave up.
pub fn send_chunks(path: &Path, size: u64, send: &mut dyn FnMut(Vec<u8>) -> bool) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?.take(size);
    let mut left = size;
    while left > 0 {
        let mut buf = vec![0u8; left.min(64 << 10) as usize];
        f.read_exact(&mut buf)?;
        left -= buf.len() as u64;
        if !send(buf) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the archive in chunks of at most 64 KiB to `send` (which returns false when the
/// receiver is gone: the download was abandoned).
pub fn write(members: &[Member], mut send: impl FnMut(Vec<u8>) -> bool) -> std::io::Result<()> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for m in members {
        if !send(header(&m.name, m.size, mtime)?.to_vec()) {
            return Ok(());
        }
        if !send_chunks(&m.path, m.size, &mut send)? {
            return Ok(());
        }
        let pad = (padded(m.size) - m.size) as usize;
        if pad > 0 && !send(vec![0u8; pad]) {
            return Ok(());
        }
    }
    send(vec![0u8; 1024]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_checksum() {
        let h = header("job-1/a.txt", 5, 0).unwrap();
        assert_eq!(&h[..11], b"job-1/a.txt");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[257..263], b"ustar\0");
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| b as u64).sum::<u64>());
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let h = header(&long, 0, 0).unwrap();
        assert_eq!(&h[345..465], "d".repeat(120).as_bytes());
        assert!(header(&"x".repeat(300), 0, 0).is_err());
    }

    #[test]
    fn archive_is_what_tar_reads() {
        let dir = std::env::temp_dir().join(format!("cemiface-tar-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.join("sub/b.bin"), vec![7u8; 70_000]).unwrap();
        let m = members(&dir, "set", |r| r.ends_with(".skip")).unwrap();
        let mut out = Vec::new();
        write(&m, |c| {
            out.extend(c);
            true
        })
        .unwrap();
        assert_eq!(out.len() as u64, archive_len(&m));
        assert_eq!(out.len() % 512, 0);
        // Second member's data starts after header, 512 data bytes of "hello" and its header.
        assert_eq!(&out[512..517], b"hello");
        assert_eq!(&out[1024..1033], b"set/sub/b");
        assert!(out[1536..1536 + 70_000].iter().all(|&b| b == 7));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
