//! MXNet/insightface RecordIO (`train.rec` + `train.idx`, docs/paper.md §2.6): the format CASIA-WebFace and
//! MS1M ship in. Each record: magic 0xced7230a, a u32 whose low 29 bits are the length (high 3 bits:
//! continuation flag, 0 for whole records), the payload, zero padding to 4 bytes. A payload is an
//! `IRHeader` (flag u32, label f32, id u64, id2 u64), `flag` extra f32 labels when flag > 0, then the
//! encoded image. The `.idx` file maps record keys to byte offsets, one "key\toffset" per line.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const MAGIC: u32 = 0xced7_230a;

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The label (identity index in face data sets): the header's scalar label, or with a label
    /// array (flag > 0) its first element, as MXNet's `unpack` and insightface read it.
    pub label: f32,
    /// All extra labels (header records of insightface sets hold counts here).
    pub labels: Vec<f32>,
    pub id: u64,
    /// The encoded image (JPEG, PNG); empty for header-only records.
    pub image: Vec<u8>,
}

/// Random access to a `.rec` through its `.idx`.
pub struct RecordReader {
    rec: File,
    path: PathBuf,
    len: u64,
    offsets: BTreeMap<u64, u64>,
}

fn bad(path: &Path, message: String) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message,
    }
}

impl RecordReader {
    /// Opens `x.rec` with `x.idx` beside it.
    pub fn open(rec_path: &Path) -> Result<Self> {
        let idx_path = rec_path.with_extension("idx");
        let text = std::fs::read_to_string(&idx_path).map_err(|e| Error::io(&idx_path, e))?;
        let mut offsets = BTreeMap::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut parts = line.split_whitespace();
            let (Some(k), Some(o), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(
                    &idx_path,
                    format!("line {}: expected `key<TAB>offset`", n + 1),
                ));
            };
            let parse = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| bad(&idx_path, format!("line {}: `{s}` is not a number", n + 1)))
            };
            offsets.insert(parse(k)?, parse(o)?);
        }
        let rec = File::open(rec_path).map_err(|e| Error::io(rec_path, e))?;
        let len = rec.metadata().map_err(|e| Error::io(rec_path, e))?.len();
        Ok(Self {
            rec,
            path: rec_path.to_path_buf(),
            len,
            offsets,
        })
    }

    /// Record keys in order.
    pub fn keys(&self) -> Vec<u64> {
        self.offsets.keys().copied().collect()
    }

    /// Keys of the image records. insightface sets open with a header record (key 0, no image)
    /// whose two labels are [first identity-record key, end]: images are the keys 1..first, the
    /// identity-range records after them are skipped.
    pub fn image_keys(&mut self) -> Result<Vec<u64>> {
        let mut keys = self.keys();
        if let Some(&first) = keys.first() {
            let head = self.read(first)?;
            if head.image.is_empty() {
                keys.remove(0);
                if head.labels.len() >= 2 && head.labels[0] >= 1.0 {
                    let end = head.labels[0] as u64;
                    keys.retain(|&k| k < end);
                }
            }
        }
        Ok(keys)
    }

    /// Reads record `key`.
    pub fn read(&mut self, key: u64) -> Result<Record> {
        let &offset = self
            .offsets
            .get(&key)
            .ok_or_else(|| bad(&self.path, format!("no record {key} in the index")))?;
        let truncated = |what: &str| {
            bad(
                &self.path,
                format!("record {key} at byte {offset}: truncated ({what})"),
            )
        };
        if offset + 8 > self.len {
            return Err(truncated("header past the end of the file"));
        }
        self.rec
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io(&self.path, e))?;
        let mut head = [0u8; 8];
        self.rec
            .read_exact(&mut head)
            .map_err(|e| Error::io(&self.path, e))?;
        let magic = u32::from_le_bytes(head[0..4].try_into().unwrap());
        if magic != MAGIC {
            return Err(bad(
                &self.path,
                format!("record {key} at byte {offset}: bad magic {magic:#x} (not a RecordIO file?)"),
            ));
        }
        let lrec = u32::from_le_bytes(head[4..8].try_into().unwrap());
        let (cflag, length) = (lrec >> 29, (lrec & ((1 << 29) - 1)) as u64);
        if cflag != 0 {
            return Err(bad(
                &self.path,
                format!("record {key}: multi-part records (flag {cflag}) are not supported"),
            ));
        }
        if offset + 8 + length > self.len {
            return Err(truncated("payload past the end of the file"));
        }
        let mut payload = vec![0u8; length as usize];
        self.rec
            .read_exact(&mut payload)
            .map_err(|e| Error::io(&self.path, e))?;
        if payload.len() < 24 {
            return Err(bad(
                &self.path,
                format!(
                    "record {key}: payload of {} bytes is shorter than its header",
                    payload.len()
                ),
            ));
        }
        let flag = u32::from_le_bytes(payload[0..4].try_into().unwrap()) as usize;
        let label = f32::from_le_bytes(payload[4..8].try_into().unwrap());
        let id = u64::from_le_bytes(payload[8..16].try_into().unwrap());
        let start = 24 + 4 * flag;
        if payload.len() < start {
            return Err(bad(
                &self.path,
                format!("record {key}: {flag} labels announced, payload too short"),
            ));
        }
        let labels: Vec<f32> = payload[24..start]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(Record {
            label: labels.first().copied().unwrap_or(label),
            labels,
            id,
            image: payload[start..].to_vec(),
        })
    }
}

/// Writes `x.rec` and `x.idx`.
pub struct RecordWriter {
    rec: File,
    idx: File,
    path: PathBuf,
    offset: u64,
}

impl RecordWriter {
    pub fn create(rec_path: &Path) -> Result<Self> {
        let rec = File::create(rec_path).map_err(|e| Error::io(rec_path, e))?;
        let idx_path = rec_path.with_extension("idx");
        let idx = File::create(&idx_path).map_err(|e| Error::io(&idx_path, e))?;
        Ok(Self {
            rec,
            idx,
            path: rec_path.to_path_buf(),
            offset: 0,
        })
    }

    /// Appends a record under `key`: a scalar `label`, or (non-empty `labels`) a label array, which
    /// MXNet's `pack` stores after the header with the header's label set to 0.
    pub fn write(&mut self, key: u64, label: f32, labels: &[f32], image: &[u8]) -> Result<()> {
        let mut payload = Vec::with_capacity(24 + 4 * labels.len() + image.len());
        payload.extend((labels.len() as u32).to_le_bytes());
        payload.extend((if labels.is_empty() { label } else { 0.0 }).to_le_bytes());
        payload.extend(key.to_le_bytes());
        payload.extend(0u64.to_le_bytes());
        labels.iter().for_each(|l| payload.extend(l.to_le_bytes()));
        payload.extend(image);
        if payload.len() >= 1 << 29 {
            return Err(bad(&self.path, format!("record {key} is too large for RecordIO")));
        }
        let pad = (4 - payload.len() % 4) % 4;
        let mut bytes = Vec::with_capacity(8 + payload.len() + pad);
        bytes.extend(MAGIC.to_le_bytes());
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend(&payload);
        bytes.extend(std::iter::repeat_n(0u8, pad));
        self.rec.write_all(&bytes).map_err(|e| Error::io(&self.path, e))?;
        writeln!(self.idx, "{key}\t{}", self.offset).map_err(|e| Error::io(&self.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("cemiface-rec-{name}-{}.rec", std::process::id()))
    }

    #[test]
    fn written_records_read_back_with_header_records_like_insightface() {
        let p = tmp("rt");
        let mut w = RecordWriter::create(&p).unwrap();
        w.write(0, 0.0, &[3.0, 1.0], b"").unwrap(); // insightface-style header: counts in labels
        w.write(1, 7.0, &[], b"JPEGDATA1").unwrap();
        w.write(2, 8.0, &[], b"JPG2").unwrap();
        drop(w);
        let mut r = RecordReader::open(&p).unwrap();
        assert_eq!(r.keys(), vec![0, 1, 2]);
        assert_eq!(r.read(0).unwrap().labels, vec![3.0, 1.0]);
        let rec = r.read(1).unwrap();
        assert_eq!((rec.label, rec.image.as_slice()), (7.0, b"JPEGDATA1".as_slice()));
        assert_eq!(r.read(2).unwrap().image, b"JPG2");
        assert!(r.read(9).unwrap_err().to_string().contains("no record 9"));
    }

    #[test]
    fn truncated_files_and_wrong_formats_are_named() {
        let p = tmp("cut");
        let mut w = RecordWriter::create(&p).unwrap();
        w.write(1, 1.0, &[], &[7u8; 100]).unwrap();
        drop(w);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..60]).unwrap();
        let err = RecordReader::open(&p).unwrap().read(1).unwrap_err().to_string();
        assert!(err.contains(".rec") && err.contains("truncated"), "{err}");
        std::fs::write(&p, vec![0u8; 200]).unwrap();
        let err = RecordReader::open(&p).unwrap().read(1).unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
        std::fs::write(p.with_extension("idx"), "1 x\n").unwrap();
        let err = RecordReader::open(&p).err().unwrap().to_string();
        assert!(err.contains(".idx") && err.contains("not a number"), "{err}");
    }
}
