#!/usr/bin/env python3
"""Golden checkpoints and outputs for the Candle IResNet (backend/engine/src/recognition/iresnet.rs).

Writes, with the Python `safetensors` package, small seeded checkpoints whose key names follow the two
reference code bases (insightface `iresnet.py`; AdaFace/TFace `net.py` with SE), runs an independent
numpy forward pass (eval mode) on a seeded input and stores input and output beside the weights
(`golden.input`, `golden.output`). Also prints the parameter counts of the full-size reference models,
which the Rust tests compare with the Candle definitions.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy safetensors
    /tmp/v/bin/python scripts/reference/iresnet_golden.py backend/engine/tests/golden
"""
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

UNITS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}


def spec(layout, depth, width, emb, se):
    """Ordered (key, shape, kind) of the reference model; kind: conv/bn/prelu/linear/bn1d."""
    out = []

    def bn(p, c, affine=True):
        if affine:
            out.extend([(f"{p}.weight", (c,), "bn_w"), (f"{p}.bias", (c,), "bn_b")])
        out.extend([(f"{p}.running_mean", (c,), "bn_m"), (f"{p}.running_var", (c,), "bn_v")])

    def conv(p, cin, cout, k):
        out.append((f"{p}.weight", (cout, cin, k, k), "conv"))

    w = width
    if layout == "insightface":
        conv("conv1", 3, w, 3); bn("bn1", w); out.append(("prelu.weight", (w,), "prelu"))
    else:
        conv("input_layer.0", 3, w, 3); bn("input_layer.1", w); out.append(("input_layer.2.weight", (w,), "prelu"))
    cin, i = w, 0
    for stage, (n, cout) in enumerate(zip(UNITS[depth], [w, 2 * w, 4 * w, 8 * w])):
        for k in range(n):
            stride = 2 if k == 0 else 1
            if layout == "insightface":
                p = f"layer{stage + 1}.{k}"
                names = [f"{p}.bn1", f"{p}.conv1", f"{p}.bn2", f"{p}.prelu", f"{p}.conv2", f"{p}.bn3"]
                proj, sc = (stride != 1 or cin != cout), f"{p}.downsample"
            else:
                p = f"body.{i}"
                names = [f"{p}.res_layer.{j}" for j in range(6)]
                proj, sc = cin != cout, f"{p}.shortcut_layer"
            bn(names[0], cin); conv(names[1], cin, cout, 3); bn(names[2], cout)
            out.append((f"{names[3]}.weight", (cout,), "prelu")); conv(names[4], cout, cout, 3); bn(names[5], cout)
            if se:
                conv(f"{p}.res_layer.6.fc1", cout, cout // 16, 1); conv(f"{p}.res_layer.6.fc2", cout // 16, cout, 1)
            if proj:
                conv(f"{sc}.0", cin, cout, 1); bn(f"{sc}.1", cout)
            cin, i = cout, i + 1
    head = ("bn2", "fc", "features", True) if layout == "insightface" else ("output_layer.0", "output_layer.3", "output_layer.4", False)
    bn(head[0], 8 * w)
    out.extend([(f"{head[1]}.weight", (emb, 8 * w * 49), "linear"), (f"{head[1]}.bias", (emb,), "linear_b")])
    bn(head[2], emb, affine=head[3])
    return out


def n_params(s):
    return sum(int(np.prod(shape)) for k, shape, kind in s if kind not in ("bn_m", "bn_v"))


def init(s, seed):
    rng = np.random.default_rng(seed)
    p = {}
    for key, shape, kind in s:
        if kind == "conv":
            fan = np.prod(shape[1:])
            v = rng.normal(0, 1 / np.sqrt(fan), shape)
        elif kind == "linear":
            v = rng.normal(0, 1 / np.sqrt(shape[1]), shape)
        elif kind == "bn_w":
            v = rng.uniform(0.5, 1.5, shape)
        elif kind in ("bn_b", "bn_m", "linear_b"):
            v = rng.normal(0, 0.1, shape)
        elif kind == "bn_v":
            v = rng.uniform(0.5, 2.0, shape)
        else:  # prelu
            v = rng.uniform(0.1, 0.4, shape)
        # stored as float16; the reference computes with exactly the stored values
        p[key] = v.astype(np.float16)
    return p


def conv2d(x, w, stride, pad):
    b, c, h, wd = x.shape
    o, _, k, _ = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = np.empty((b, c, k, k, oh, ow))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return np.einsum("bcijhw,ocij->bohw", cols, w, optimize=True)


def bn(x, p, name, affine=True):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - p[f"{name}.running_mean"].reshape(shape)) / np.sqrt(p[f"{name}.running_var"].reshape(shape) + 1e-5)
    if affine:
        y = y * p[f"{name}.weight"].reshape(shape) + p[f"{name}.bias"].reshape(shape)
    return y


def prelu(x, a):
    return np.where(x > 0, x, x * a.reshape(1, -1, 1, 1))


def forward(layout, depth, width, se, p, x):
    p = {k: v.astype(np.float64) for k, v in p.items()}
    if layout == "insightface":
        x = prelu(bn(conv2d(x, p["conv1.weight"], 1, 1), p, "bn1"), p["prelu.weight"])
    else:
        x = prelu(bn(conv2d(x, p["input_layer.0.weight"], 1, 1), p, "input_layer.1"), p["input_layer.2.weight"])
    cin, i = width, 0
    for stage, (n, cout) in enumerate(zip(UNITS[depth], [width, 2 * width, 4 * width, 8 * width])):
        for k in range(n):
            stride = 2 if k == 0 else 1
            if layout == "insightface":
                pre = f"layer{stage + 1}.{k}"
                nm = [f"{pre}.bn1", f"{pre}.conv1", f"{pre}.bn2", f"{pre}.prelu", f"{pre}.conv2", f"{pre}.bn3"]
                sc = f"{pre}.downsample"
            else:
                pre = f"body.{i}"
                nm = [f"{pre}.res_layer.{j}" for j in range(6)]
                sc = f"{pre}.shortcut_layer"
            y = conv2d(bn(x, p, nm[0]), p[f"{nm[1]}.weight"], 1, 1)
            y = prelu(bn(y, p, nm[2]), p[f"{nm[3]}.weight"])
            y = bn(conv2d(y, p[f"{nm[4]}.weight"], stride, 1), p, nm[5])
            if se:
                s = y.mean(axis=(2, 3), keepdims=True)
                s = np.maximum(conv2d(s, p[f"{pre}.res_layer.6.fc1.weight"], 1, 0), 0)
                s = 1 / (1 + np.exp(-conv2d(s, p[f"{pre}.res_layer.6.fc2.weight"], 1, 0)))
                y = y * s
            if f"{sc}.0.weight" in p:
                short = bn(conv2d(x, p[f"{sc}.0.weight"], stride, 0), p, f"{sc}.1")
            elif stride == 2:
                short = x[:, :, ::2, ::2]  # MaxPool2d(1, 2)
            else:
                short = x
            x, cin, i = y + short, cout, i + 1
    head = ("bn2", "fc", "features", True) if layout == "insightface" else ("output_layer.0", "output_layer.3", "output_layer.4", False)
    x = bn(x, p, head[0]).reshape(x.shape[0], -1)
    x = x @ p[f"{head[1]}.weight"].T + p[f"{head[1]}.bias"]
    return bn(x, p, head[2], affine=head[3])


CASES = {
    # file: (layout, depth, width, embedding, se, seed)
    "iresnet18_insightface_w8.safetensors": ("insightface", 18, 8, 16, False, 1),
    "irse18_adaface_w16.safetensors": ("adaface", 18, 16, 16, True, 2),
}


def main():
    out_dir = Path(sys.argv[1])
    for name, (layout, depth, width, emb, se, seed) in CASES.items():
        s = spec(layout, depth, width, emb, se)
        p = init(s, seed)
        x = np.random.default_rng(seed + 100).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
        y = forward(layout, depth, width, se, p, x.astype(np.float64))
        p["golden.input"] = x
        p["golden.output"] = y.astype(np.float32)
        save_file(p, str(out_dir / name))
        print(f"{name}: {n_params(s)} parameters, output[0,:4] = {y[0, :4]}", file=sys.stderr)
    counts = {
        "insightface_r18": n_params(spec("insightface", 18, 64, 512, False)),
        "insightface_r34": n_params(spec("insightface", 34, 64, 512, False)),
        "insightface_r50": n_params(spec("insightface", 50, 64, 512, False)),
        "insightface_r100": n_params(spec("insightface", 100, 64, 512, False)),
        "adaface_ir50": n_params(spec("adaface", 50, 64, 512, False)),
        "adaface_ir_se50": n_params(spec("adaface", 50, 64, 512, True)),
    }
    (out_dir / "iresnet_params.json").write_text(json.dumps(counts, indent=1) + "\n")
    print(json.dumps(counts), file=sys.stderr)


if __name__ == "__main__":
    main()
