#!/usr/bin/env python3
"""Writes the seed corpus of `cemiface fuzz` (fuzz/corpus/<target>/): valid inputs of every parser,
taken from the repo's own fixtures where there are some, written by hand from the formats' layouts
otherwise. Inputs later found to crash a parser are added next to these by hand (named crash-*).

    python3 scripts/fuzz/make_corpus.py            # from the repository root

Targets and their input layout (see backend/server/src/commands/fuzz.rs):
  recordio  u32 LE length of the .idx text, the .idx text, the .rec bytes
  bin       an insightface pickle (protocols 2, 4, 5)
  tfjs      u32 LE length of the manifest JSON, the manifest, the shard it names (w.bin)
  config    TOML generator and face-recognition configs
  protocol  demo socket messages (JSON) and a binary frame
  image     PNG (8/16-bit, grey, RGBA), JPEG, GIF, BMP
"""
import json
import os
import pickle
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def prefixed(first, rest):
    return struct.pack("<I", len(first)) + first + rest


def png(w, h, colour_type, depth, pixel):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\x00" + pixel * w
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))


def main():
    golden = os.path.join(ROOT, "backend", "engine", "tests", "golden")
    with open(os.path.join(golden, "recordio_fixture.idx"), "rb") as f:
        idx = f.read()
    with open(os.path.join(golden, "recordio_fixture.rec"), "rb") as f:
        rec = f.read()
    put("recordio", "fixture", prefixed(idx, rec))

    with open(os.path.join(ROOT, "backend", "server", "tests", "golden", "photos.bin"), "rb") as f:
        photos = f.read()
    bins, same = pickle.loads(photos)
    put("bin", "photos-2pairs", pickle.dumps((bins[:4], same[:2]), protocol=pickle.HIGHEST_PROTOCOL))
    put("bin", "tiny-p2", pickle.dumps(([b"ab", b"cd"], [True]), protocol=2))
    put("bin", "tiny-p4", pickle.dumps(([b"ab", b"cd", b"ef", b"gh"], [True, False]), protocol=4))
    put("image", "crop.jpg", bins[0])

    weights = [
        {"name": "a/kernel", "shape": [2, 3], "dtype": "float32"},
        {"name": "a/bias", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "c", "shape": [1], "dtype": "int32"},
    ]
    shard = struct.pack("<6f", *range(6)) + bytes([0, 1, 2]) + struct.pack("<2e", 1.0, -2.0) + struct.pack("<i", 7)
    manifest = json.dumps([{"paths": ["w.bin"], "weights": weights}]).encode()
    put("tfjs", "manifest", prefixed(manifest, shard))

    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        with open(os.path.join(ROOT, "configs", name), "rb") as f:
            put("config", name, f.read())

    messages = {
        "submit.json": {"type": "submit", "upload_id": "u123", "m": 0.0, "steps": 20, "seed": 7, "eta": 1.0},
        "sweep.json": {"type": "submit", "upload_id": "u123", "m": 0.5, "steps": 5, "seed": 1, "eta": 0.0, "sweep": True},
        "cancel.json": {"type": "cancel", "job_id": 3},
        "subscribe.json": {"type": "subscribe", "job_id": 18446744073709551615},
    }
    for name, m in messages.items():
        put("protocol", name, json.dumps(m))
    meta = json.dumps({"job_id": 1, "seq": 2, "step": 3, "steps": 20, "t": 900, "m": [0.0, 0.5],
                       "similarity": [0.1, 0.4], "elapsed_ms": 10, "eta_ms": 100, "mime": "image/png",
                       "width": 2, "height": 2}).encode()
    put("protocol", "frame.bin", struct.pack(">II", 1, len(meta)) + meta + png(2, 2, 2, 8, b"\x10\x20\x30"))

    put("image", "rgb8.png", png(2, 2, 2, 8, b"\xff\x00\x00"))
    put("image", "rgba16.png", png(8, 8, 6, 16, b"\x00" * 8))
    put("image", "grey8.png", png(4, 3, 0, 8, b"\x80"))
    put("image", "one.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    pixels = b"\x00\x00\xff\x00\xff\x00\x00\x00" * 2  # 2×2 BGR rows padded to 4 bytes
    header = struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    put("image", "two.bmp", b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 54) + header + pixels)


if __name__ == "__main__":
    main()
