"""Writes an insightface-style RecordIO pair (recordio_fixture.rec + .idx) following MXNet's layout,
independently of the Rust writer, plus the JSON of what a reader must find in it.

Layout (mxnet/recordio.py + dmlc-core recordio): every record is the magic 0xced7230a (u32 LE), a
u32 whose low 29 bits hold the payload length and whose high 3 bits the continuation flag (0), the
payload, and zero padding to a multiple of 4. The payload is `pack(IRHeader, image)`: struct
'IfQQ' (flag, label, id, id2); a label *array* is written as float32 after the header, with
flag = its length and the header label 0. The .idx holds "key\\toffset\\n" per record.

Records (as insightface's MS1M/CASIA sets): key 0 is a header with labels [4, 6] (images are keys
1..3, identity records 4..5); keys 1–3 are 2×2 PNGs, key 2 with a multi-label header [7, 1.5];
keys 4–5 hold each identity's image-key range.

Run: python3 scripts/reference/recordio_fixture.py backend/engine/tests/golden
"""
import json
import struct
import sys
import zlib

MAGIC = 0xCED7230A


def png(rgb):
    """A 2×2 RGB PNG of one colour."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + bytes(rgb) * 2
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * 2)) + chunk(b"IEND", b""))


def pack(label, ident, image):
    if isinstance(label, (int, float)):
        head = struct.pack("IfQQ", 0, float(label), ident, 0)
        return head + image
    arr = struct.pack("%df" % len(label), *label)
    return struct.pack("IfQQ", len(label), 0.0, ident, 0) + arr + image


def main(out):
    records = [
        (0, [4.0, 6.0], b""),
        (1, 0.0, png((255, 0, 0))),
        (2, [7.0, 1.5], png((0, 255, 0))),
        (3, 1.0, png((0, 0, 255))),
        (4, [1.0, 2.0], b""),
        (5, [2.0, 4.0], b""),
    ]
    expected = []
    with open(f"{out}/recordio_fixture.rec", "wb") as rec, open(f"{out}/recordio_fixture.idx", "w") as idx:
        for key, label, image in records:
            payload = pack(label, key, image)
            idx.write("%d\t%d\n" % (key, rec.tell()))
            rec.write(struct.pack("<II", MAGIC, len(payload) & ((1 << 29) - 1)))
            rec.write(payload)
            rec.write(b"\x00" * ((4 - len(payload) % 4) % 4))
            labels = label if isinstance(label, list) else []
            expected.append({
                "key": key,
                "label": labels[0] if labels else label,
                "labels": labels,
                "id": key,
                "image_hex": image.hex(),
            })
    with open(f"{out}/recordio_fixture.recordio.json", "w") as f:
        json.dump({"records": expected, "image_keys": [1, 2, 3]}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
