//! The data set download: a tar archive written on the fly by the `tar` crate's builder (GNU
//! headers, so long member names get their `././@LongLink` entries). The archive's length is found
//! first by running the same builder over a byte counter with zero-filled stand-ins of the files, so
//! the response carries an exact Content-Length; the second run streams the real bytes in chunks.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// One member: its name inside the archive and the file it comes from.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Regular files under `root` (symbolic links are never followed), sorted, named
/// `prefix/<relative path>`; `skip` filters relative paths out.
pub fn members(root: &Path, prefix: &str, skip: impl Fn(&str) -> bool) -> io::Result<Vec<Member>> {
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

/// Builds the archive of `members` into `out`, each member's bytes read from `open(member)`.
fn build<W: Write>(
    out: W,
    members: &[Member],
    mtime: u64,
    mut open: impl FnMut(&Member) -> io::Result<Box<dyn Read>>,
) -> io::Result<W> {
    let mut b = ::tar::Builder::new(out);
    for m in members {
        let mut h = ::tar::Header::new_gnu();
        h.set_entry_type(::tar::EntryType::Regular);
        h.set_size(m.size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        b.append_data(
            &mut h,
            &m.name,
            Exact {
                inner: open(m)?,
                left: m.size,
                name: &m.name,
            },
        )?;
    }
    b.into_inner()
}

/// Bytes of the whole archive (the same builder over a counter, with zeros for the files' bytes).
pub fn archive_len(members: &[Member]) -> io::Result<u64> {
    let counter = build(Counter(0), members, 0, |m| {
        Ok(Box::new(io::repeat(0).take(m.size)))
    })?;
    Ok(counter.0)
}

/// Sends the first `size` bytes of `path` in chunks of at most 64 KiB; false when `send` gave up.
pub fn send_chunks(path: &Path, size: u64, send: &mut dyn FnMut(Vec<u8>) -> bool) -> io::Result<bool> {
    let mut f = std::fs::File::open(path)?.take(size);
    let mut left = size;
    while left > 0 {
        let mut buf = vec![0u8; left.min(CHUNK as u64) as usize];
        f.read_exact(&mut buf)?;
        left -= buf.len() as u64;
        if !send(buf) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the archive in chunks of at most 64 KiB to `send` (which returns false when the
/// receiver is gone: the download was abandoned, which is not an error).
pub fn write(members: &[Member], send: impl FnMut(Vec<u8>) -> bool) -> io::Result<()> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = Chunks {
        buf: Vec::with_capacity(CHUNK),
        send,
        gone: false,
    };
    let open = |m: &Member| -> io::Result<Box<dyn Read>> {
        Ok(Box::new(std::fs::File::open(&m.path)?.take(m.size)))
    };
    match build(out, members, mtime, open) {
        Ok(mut out) => {
            out.flush_chunk();
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e),
    }
}

const CHUNK: usize = 64 << 10;

/// Counts the bytes written to it.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Collects bytes into chunks of [`CHUNK`] and hands each to `send`; BrokenPipe once it gave up.
struct Chunks<F: FnMut(Vec<u8>) -> bool> {
    buf: Vec<u8>,
    send: F,
    gone: bool,
}

impl<F: FnMut(Vec<u8>) -> bool> Chunks<F> {
    fn flush_chunk(&mut self) {
        if !self.buf.is_empty() && !self.gone {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.gone = !(self.send)(chunk);
        }
    }
}

impl<F: FnMut(Vec<u8>) -> bool> Write for Chunks<F> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.gone {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = b.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == CHUNK {
            self.flush_chunk();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that must yield exactly `left` more bytes: a file that shrank since it was listed is an
/// error naming it (its header already promised the old size).
struct Exact<'a> {
    inner: Box<dyn Read>,
    left: u64,
    name: &'a str,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: the file shrank by {} bytes while it was archived",
                    self.name, self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(m: &[Member]) -> Vec<u8> {
        let mut out = Vec::new();
        write(m, |c| {
            assert!(c.len() <= CHUNK);
            out.extend(c);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn archive_is_what_tar_reads_with_long_names_and_exact_length() {
        let dir = std::env::temp_dir().join(format!("cemiface-tar-{}", std::process::id()));
        let long_dir = "d".repeat(120);
        std::fs::create_dir_all(dir.join("sub").join(&long_dir)).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.join("sub/b.bin"), vec![7u8; 70_000]).unwrap();
        std::fs::write(dir.join("sub").join(&long_dir).join("f".repeat(90)), b"deep").unwrap();
        std::fs::write(dir.join("x.skip"), b"no").unwrap();
        let m = members(&dir, "set", |r| r.ends_with(".skip")).unwrap();
        assert_eq!(m.len(), 3);
        let out = archive(&m);
        assert_eq!(out.len() as u64, archive_len(&m).unwrap());
        assert_eq!(out.len() % 512, 0);
        // Read back with the system tar: names (the 215-byte one too), sizes and bytes.
        let tar_path = dir.join("out.tar");
        std::fs::write(&tar_path, &out).unwrap();
        let listed = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&tar_path)
            .output()
            .unwrap();
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        let long_name = format!("set/sub/{long_dir}/{}", "f".repeat(90));
        assert_eq!(
            String::from_utf8(listed.stdout).unwrap(),
            format!("set/a.txt\nset/sub/b.bin\n{long_name}\n")
        );
        let cat = |name: &str| {
            std::process::Command::new("tar")
                .arg("-xOf")
                .arg(&tar_path)
                .arg(name)
                .output()
                .unwrap()
                .stdout
        };
        assert_eq!(cat("set/a.txt"), b"hello");
        assert_eq!(cat("set/sub/b.bin"), vec![7u8; 70_000]);
        assert_eq!(cat(&long_name), b"deep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_abandoned_download_stops_quietly_and_a_shrunk_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("cemiface-tar-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("big.bin"), vec![1u8; 300_000]).unwrap();
        let m = members(&dir, "set", |_| false).unwrap();
        let mut sent = 0;
        write(&m, |_| {
            sent += 1;
            sent < 2
        })
        .unwrap();
        assert_eq!(sent, 2, "no chunk after the receiver gave up");
        std::fs::write(dir.join("big.bin"), vec![1u8; 10]).unwrap();
        let e = write(&m, |_| true).unwrap_err();
        assert!(e.to_string().contains("set/big.bin: the file shrank"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
