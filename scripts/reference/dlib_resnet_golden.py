#!/usr/bin/env python3
"""Golden values for the Candle port of dlib's face-recognition ResNet (backend/engine/src/identity/dlib_resnet.rs).

An independent numpy re-implementation of face-api's FaceRecognitionNet (NHWC, TF padding rules, the
same uint8 dequantisation), run on deterministic inputs that the Rust test rebuilds bit for bit.
Needs numpy only (`python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy`); never runs on the product path.

    python3 scripts/reference/dlib_resnet_golden.py assets/face-api > backend/engine/tests/golden/dlib_resnet.json
"""
import json
import sys
from pathlib import Path

import numpy as np

MEAN = np.array([122.782, 117.001, 104.298], np.float64)


def load(model_dir: Path):
    manifest = json.loads((model_dir / "face_recognition_model-weights_manifest.json").read_text())
    out = {}
    for group in manifest:
        data = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            q = w.get("quantization")
            if q:
                assert q["dtype"] == "uint8"
                v = np.frombuffer(data, np.uint8, n, off).astype(np.float64) * q["scale"] + q["min"]
                off += n
            else:
                v = np.frombuffer(data, "<f4", n, off).astype(np.float64)
                off += 4 * n
            out[w["name"]] = v.reshape(w["shape"])
    return out


def conv2d(x, f, stride, same):
    """x: (H, W, C) NHWC without batch; f: (kh, kw, cin, cout); TF SAME/VALID padding."""
    kh, kw, _, cout = f.shape
    if same:
        h, w = x.shape[:2]
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    h, w, c = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = np.empty((oh, ow, kh, kw, c))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j, :] = x[i : i + stride * oh : stride, j : j + stride * ow : stride, :]
    return cols.reshape(oh * ow, -1).dot(f.reshape(-1, cout)).reshape(oh, ow, cout)


def conv_layer(x, p, name, stride, relu, same):
    y = conv2d(x, p[f"{name}/conv/filters"], stride, same) + p[f"{name}/conv/bias"]
    y = y * p[f"{name}/scale/weights"] + p[f"{name}/scale/biases"]
    return np.maximum(y, 0) if relu else y


def residual(x, p, name):
    out = conv_layer(x, p, f"{name}/conv1", 1, True, True)
    out = conv_layer(out, p, f"{name}/conv2", 1, False, True)
    return np.maximum(out + x, 0)


def residual_down(x, p, name):
    out = conv_layer(x, p, f"{name}/conv1", 2, True, False)
    out = conv_layer(out, p, f"{name}/conv2", 1, False, True)
    h, w, c = x.shape
    ph, pw = h // 2, w // 2
    pooled = x[: 2 * ph, : 2 * pw].reshape(ph, 2, pw, 2, c).mean(axis=(1, 3))
    if out.shape[:2] != pooled.shape[:2]:
        out = np.pad(out, ((0, ph - out.shape[0]), (0, pw - out.shape[1]), (0, 0)))
    if pooled.shape[2] != out.shape[2]:
        pooled = np.concatenate([pooled, np.zeros_like(pooled)], axis=2)
    return np.maximum(pooled + out, 0)


def max_pool(x, k, s):
    h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.full((oh, ow, c), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, x[i : i + s * oh : s, j : j + s * ow : s])
    return out


def descriptor(p, chip):
    """chip: (150, 150, 3) RGB in [0, 255]."""
    x = (chip - MEAN) / 256.0
    x = conv_layer(x, p, "conv32_down", 2, True, False)
    x = max_pool(x, 3, 2)
    for name in ["conv32_1", "conv32_2", "conv32_3"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv64_down")
    for name in ["conv64_1", "conv64_2", "conv64_3"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv128_down")
    for name in ["conv128_1", "conv128_2"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv256_down")
    for name in ["conv256_1", "conv256_2"]:
        x = residual(x, p, name)
    x = residual_down(x, p, "conv256_down_out")
    return x.mean(axis=(0, 1)).dot(p["fc"])


def pattern(seed: int):
    """Deterministic 150x150x3 input in [0, 255], rebuilt exactly by the Rust test (integer arithmetic)."""
    h, w, c = np.meshgrid(np.arange(150), np.arange(150), np.arange(3), indexing="ij")
    return ((h * 7 + w * 13 + c * 29 + seed * 101 + (h * w) // 11) % 256).astype(np.float64)


def main():
    p = load(Path(sys.argv[1]))
    out = {
        # the loader's dequantisation (q * scale + min), a few tensors, flattened in manifest order
        "dequantized": {k: [round(float(v), 9) for v in p[k].reshape(-1)[:8]] + [round(float(p[k].sum()), 6)]
                        for k in ("conv32_down/conv/filters", "conv128_1/conv2/scale/weights", "fc")},
        "inputs": "pattern(seed) = (7h + 13w + 29c + 101 seed + floor(h w / 11)) mod 256, HWC RGB",
        "descriptors": {str(s): [round(float(v), 7) for v in descriptor(p, pattern(s))] for s in (0, 1)},
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
