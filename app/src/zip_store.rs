//! A ZIP archive of stored (uncompressed) files, written in the browser for "Download all" of the
//! demo gallery. PNGs are already deflated, so storing them costs nothing; what this needs of the
//! format (APPNOTE 6.3.10 §4.3: local headers, central directory, end record, CRC-32) is small.
//! The `zip` crate would do it too, but it brings `getrandom`, `nix` and `libc`, which do not build
//! for `wasm32-unknown-unknown` without extra configuration.

/// One file: its name inside the archive (UTF-8) and its bytes.
pub struct Entry<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// The archive's bytes. Names and sizes must fit ZIP's 32-bit fields (no ZIP64): a gallery is
/// at most a few MB.
pub fn write(entries: &[Entry]) -> Vec<u8> {
    // DOS date 2026-01-01 00:00 (the gallery's files have no meaningful mtime).
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = ((2026 - 1980) << 9) | (1 << 5) | 1;
    const UTF8_NAMES: u16 = 1 << 11;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let crc = crc32fast::hash(e.bytes);
        let offset = out.len() as u32;
        let name = e.name.as_bytes();
        let size = e.bytes.len() as u32;
        // Local file header.
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend(20u16.to_le_bytes()); // version needed: 2.0
        out.extend(UTF8_NAMES.to_le_bytes());
        out.extend(0u16.to_le_bytes()); // method: stored
        out.extend(DOS_TIME.to_le_bytes());
        out.extend(DOS_DATE.to_le_bytes());
        out.extend(crc.to_le_bytes());
        out.extend(size.to_le_bytes()); // compressed
        out.extend(size.to_le_bytes()); // uncompressed
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes()); // extra field length
        out.extend(name);
        out.extend(e.bytes);
        // Its central directory record.
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // made by
        central.extend(20u16.to_le_bytes()); // needed
        central.extend(UTF8_NAMES.to_le_bytes());
        central.extend(0u16.to_le_bytes());
        central.extend(DOS_TIME.to_le_bytes());
        central.extend(DOS_DATE.to_le_bytes());
        central.extend(crc.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend((name.len() as u16).to_le_bytes());
        central.extend([0u8; 8]); // extra, comment, disk number start, internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name);
    }
    let dir_offset = out.len() as u32;
    let dir_size = central.len() as u32;
    out.extend(central);
    // End of central directory record.
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // this disk, disk with the directory
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(dir_size.to_le_bytes());
    out.extend(dir_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes()); // comment length
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_zip_crate_reads_back_every_file() {
        let a = vec![7u8; 1000];
        let b = b"\x89PNG fake".to_vec();
        let bytes = write(&[
            Entry {
                name: "cemiface-1.png",
                bytes: &a,
            },
            Entry {
                name: "ü/2.png",
                bytes: &b,
            },
        ]);
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(zip.len(), 2);
        let mut got = Vec::new();
        zip.by_name("cemiface-1.png")
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, a);
        got.clear();
        zip.by_name("ü/2.png").unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got, b);
    }

    #[test]
    fn an_empty_archive_is_just_the_end_record() {
        let bytes = write(&[]);
        assert_eq!(bytes.len(), 22);
        assert_eq!(
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap().len(),
            0
        );
    }
}
