//! insightface verification sets (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, …): a Python pickle of
//! `(list of encoded images, list of bools)`, image 2i and 2i+1 forming pair i. Read with a small
//! pickle interpreter that accepts only the opcodes these files use (protocols 2–5, and Python 2's
//! byte strings) and refuses everything else — no code from the file is ever run.

use std::collections::HashMap;
use std::path::Path;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bytes(Vec<u8>),
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Codecs,
    Mark,
}

/// The pairs of a verification set.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSet {
    /// Encoded images (JPEG/PNG), two per pair.
    pub images: Vec<Vec<u8>>,
    /// Whether pair i shows the same person.
    pub same: Vec<bool>,
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    name: String,
}

impl Parser<'_> {
    fn bad(&self, message: impl Into<String>) -> Error {
        Error::Format {
            path: self.name.clone().into(),
            message: format!("byte {}: {}", self.pos, message.into()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.pos + n > self.data.len() {
            return Err(self.bad("truncated pickle"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | x as u64))
    }

    fn run(&mut self) -> Result<Value> {
        let mut stack: Vec<Value> = Vec::new();
        let mut memo: HashMap<u64, Value> = HashMap::new();
        loop {
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b']' => stack.push(Value::List(Vec::new())),
                b')' => stack.push(Value::Tuple(Vec::new())),
                b'(' => stack.push(Value::Mark),
                b'e' | b'a' | b't' => {
                    let items = if op == b'a' {
                        vec![stack.pop().ok_or_else(|| self.bad("empty stack"))?]
                    } else {
                        let m = stack
                            .iter()
                            .rposition(|v| *v == Value::Mark)
                            .ok_or_else(|| self.bad("no mark"))?;
                        let items = stack.split_off(m + 1);
                        stack.pop();
                        items
                    };
                    if op == b't' {
                        stack.push(Value::Tuple(items));
                    } else {
                        match stack.last_mut() {
                            Some(Value::List(l)) => l.extend(items),
                            _ => return Err(self.bad("append to a non-list")),
                        }
                    }
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if stack.len() < n {
                        return Err(self.bad("short stack for tuple"));
                    }
                    let items = stack.split_off(stack.len() - n);
                    stack.push(Value::Tuple(items));
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => self.uint(1)?,
                        b'r' => self.uint(4)?,
                        _ => memo.len() as u64,
                    };
                    memo.insert(
                        key,
                        stack
                            .last()
                            .cloned()
                            .ok_or_else(|| self.bad("memoize on empty stack"))?,
                    );
                }
                b'h' | b'j' => {
                    let key = self.uint(if op == b'h' { 1 } else { 4 })?;
                    stack.push(
                        memo.get(&key)
                            .cloned()
                            .ok_or_else(|| self.bad(format!("unknown memo {key}")))?,
                    );
                }
                b'C' | b'B' | 0x8e | b'U' | b'T' => {
                    let n = match op {
                        b'C' | b'U' => self.uint(1)?,
                        b'B' | b'T' => self.uint(4)?,
                        _ => self.uint(8)?,
                    } as usize;
                    stack.push(Value::Bytes(self.take(n)?.to_vec()));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        0x8c => self.uint(1)?,
                        b'X' => self.uint(4)?,
                        _ => self.uint(8)?,
                    } as usize;
                    let s =
                        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| self.bad("invalid UTF-8"))?;
                    stack.push(Value::Str(s));
                }
                0x88 => stack.push(Value::Bool(true)),
                0x89 => stack.push(Value::Bool(false)),
                b'K' => stack.push(Value::Int(self.uint(1)? as i64)),
                b'M' => stack.push(Value::Int(self.uint(2)? as i64)),
                b'J' => stack.push(Value::Int(self.uint(4)? as u32 as i32 as i64)),
                b'c' => {
                    let line = |p: &mut Self| -> Result<String> {
                        let end = p.data[p.pos..]
                            .iter()
                            .position(|&b| b == b'\n')
                            .ok_or_else(|| p.bad("bad GLOBAL"))?;
                        let s = String::from_utf8_lossy(&p.data[p.pos..p.pos + end]).into_owned();
                        p.pos += end + 1;
                        Ok(s)
                    };
                    let (module, name) = (line(self)?, line(self)?);
                    if (module.as_str(), name.as_str()) != ("_codecs", "encode") {
                        return Err(self.bad(format!("refusing to load global {module}.{name}")));
                    }
                    stack.push(Value::Codecs);
                }
                b'R' => {
                    // Python 3 protocol-2 bytes: _codecs.encode(text, 'latin1').
                    let args = stack.pop();
                    let func = stack.pop();
                    match (func, args) {
                        (Some(Value::Codecs), Some(Value::Tuple(a))) => match a.as_slice() {
                            [Value::Str(s), Value::Str(enc)] if enc == "latin1" || enc == "latin-1" => {
                                let bytes = s
                                    .chars()
                                    .map(|c| u8::try_from(c as u32))
                                    .collect::<std::result::Result<Vec<u8>, _>>();
                                stack.push(Value::Bytes(bytes.map_err(|_| self.bad("non-latin1 text"))?));
                            }
                            _ => return Err(self.bad("unexpected _codecs.encode arguments")),
                        },
                        _ => return Err(self.bad("unsupported REDUCE")),
                    }
                }
                b'.' => return stack.pop().ok_or_else(|| self.bad("empty pickle")),
                other => return Err(self.bad(format!("unsupported pickle opcode {other:#04x}"))),
            }
        }
    }
}

/// Parses the bytes of a `.bin` set; `name` is used in errors.
pub fn parse(data: &[u8], name: &str) -> Result<PairSet> {
    let mut p = Parser {
        data,
        pos: 0,
        name: name.into(),
    };
    let top = p.run()?;
    let bad = |m: &str| Error::Format {
        path: name.into(),
        message: m.into(),
    };
    let Value::Tuple(parts) = top else {
        return Err(bad("expected a (images, issame) tuple"));
    };
    let [Value::List(imgs), Value::List(flags)] = parts.as_slice() else {
        return Err(bad("expected a (images, issame) tuple of two lists"));
    };
    let images = imgs
        .iter()
        .map(|v| match v {
            Value::Bytes(b) => Ok(b.clone()),
            _ => Err(bad("an image entry is not a byte string")),
        })
        .collect::<Result<Vec<_>>>()?;
    let same = flags
        .iter()
        .map(|v| match v {
            Value::Bool(b) => Ok(*b),
            Value::Int(i) => Ok(*i != 0),
            _ => Err(bad("an issame entry is not a boolean")),
        })
        .collect::<Result<Vec<_>>>()?;
    if images.len() != 2 * same.len() {
        return Err(bad(&format!(
            "{} images for {} pairs (expected two per pair)",
            images.len(),
            same.len()
        )));
    }
    Ok(PairSet { images, same })
}

/// Writes a pair set as insightface does (a protocol-4 pickle of `(list of bytes, list of bool)`).
pub fn write(path: &Path, set: &PairSet) -> Result<()> {
    let mut out = vec![0x80, 4, b']', b'('];
    for img in &set.images {
        out.push(0x8e); // BINBYTES8
        out.extend((img.len() as u64).to_le_bytes());
        out.extend(img);
    }
    out.extend([b'e', b']', b'(']);
    out.extend(set.same.iter().map(|&s| if s { 0x88 } else { 0x89 }));
    out.extend([b'e', 0x86, b'.']);
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// Reads a `.bin` file.
pub fn read(path: &Path) -> Result<PairSet> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&data, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps(([b'\x89PNGabc', b'xyz'], [True]), protocol=4)` (CPython 3.11).
    const P4: &[u8] = b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00]\x94(C\x07\x89PNGabc\x94C\x03xyz\x94e]\x94\x88a\x86\x94.";
    /// The same with protocol=2 (bytes become `_codecs.encode(str, 'latin1')`).
    const P2: &[u8] = b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x08\x00\x00\x00\xc2\x89PNGabcq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x03\x00\x00\x00xyzq\x06h\x03\x86q\x07Rq\x08e]q\x09\x88a\x86q\n.";

    #[test]
    fn python3_protocols_and_python2_strings_parse() {
        for data in [P4, P2] {
            let set = parse(data, "t.bin").unwrap();
            assert_eq!(set.images, vec![b"\x89PNGabc".to_vec(), b"xyz".to_vec()]);
            assert_eq!(set.same, vec![true]);
        }
        // Python 2 (protocol 2): SHORT_BINSTRING items and NEWTRUE.
        let py2 = b"\x80\x02](U\x02abU\x02cde](\x88e\x86.";
        assert_eq!(
            parse(py2, "py2.bin").unwrap().images,
            vec![b"ab".to_vec(), b"cd".to_vec()]
        );
    }

    #[test]
    fn written_sets_read_back() {
        let set = PairSet {
            images: vec![b"a".to_vec(), vec![0u8; 300], b"c".to_vec(), b"d".to_vec()],
            same: vec![true, false],
        };
        let p = std::env::temp_dir().join(format!("cemiface-bin-{}.bin", std::process::id()));
        write(&p, &set).unwrap();
        assert_eq!(read(&p).unwrap(), set);
    }

    #[test]
    fn malicious_truncated_and_wrong_files_are_refused() {
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let err = parse(evil, "evil.bin").unwrap_err().to_string();
        assert!(err.contains("refusing to load global os.system"), "{err}");
        let err = parse(&P4[..20], "cut.bin").unwrap_err().to_string();
        assert!(err.contains("cut.bin") && err.contains("truncated"), "{err}");
        let odd = b"\x80\x04](C\x01aC\x01bC\x01ce](\x88e\x86.";
        assert!(parse(odd, "odd.bin")
            .unwrap_err()
            .to_string()
            .contains("3 images for 1 pairs"));
    }
}
