"""Golden outputs of the MobileFace tfjs graph model, by an independent numpy interpreter (NHWC, as
TensorFlow runs it), for the engine's parity test (backend/engine/tests/mobileface.rs).

    /tmp/refvenv/bin/python scripts/reference/mobileface_golden.py assets/human-models/mobileface.json \
        > backend/engine/tests/golden/mobileface.json

Inputs are two deterministic 112x112 RGB patterns in raw 0..255 (the formulas are repeated in the
Rust test). Never run by the product or CI.
"""
import base64
import json
import os
import sys

import numpy as np


def load(path):
    m = json.load(open(path))
    weights = {}
    for group in m["weightsManifest"]:
        data = b"".join(open(os.path.join(os.path.dirname(path), p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            assert "quantization" not in w, "this script reads float32/int32 weights only"
            dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            weights[w["name"]] = np.frombuffer(data[off:off + 4 * n], dt).reshape(w["shape"]).astype(np.float64)
            off += 4 * n
        assert off == len(data)
    nodes = {n["name"]: n for n in m["modelTopology"]["node"]}
    out = next(iter(m["signature"]["outputs"])).split(":")[0]
    inp = next(iter(m["signature"]["inputs"])).split(":")[0]
    return nodes, weights, inp, out


def conv(x, k, stride, depthwise):
    # x: (B, H, W, C) already padded (VALID); k: (kh, kw, C, O) or (kh, kw, C, mult)
    kh, kw = k.shape[:2]
    b, h, w, c = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            if depthwise:
                term = (patch[..., :, None] * k[i, j][None, None, None]).reshape(b, ho, wo, -1)
            else:
                term = patch @ k[i, j]
            out = term if out is None else out + term
    return out


def run(nodes, weights, inp, out, x):
    memo = {inp: x}

    def ev(name):
        name = name.split(":")[0]
        if name in memo:
            return memo[name]
        n = nodes[name]
        a = [ev(i) for i in n.get("input", [])]
        op = n["op"]
        if op == "Const":
            v = weights[name]
        elif op in ("AddV2", "Add"):
            v = a[0] + a[1]
        elif op == "Sub":
            v = a[0] - a[1]
        elif op == "Mul":
            v = a[0] * a[1]
        elif op == "Maximum":
            v = np.maximum(a[0], a[1])
        elif op == "Minimum":
            v = np.minimum(a[0], a[1])
        elif op == "Pad":
            v = np.pad(a[0], a[1].astype(int))
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            assert base64.b64decode(n["attr"]["padding"]["s"]) == b"VALID"
            s = int(n["attr"]["strides"]["list"]["i"][1])
            v = conv(a[0], a[1], s, op != "Conv2D")
        elif op == "Reshape":
            v = a[0].reshape(a[1].astype(int))
        elif op == "MatMul":
            v = a[0] @ a[1]
        else:
            raise ValueError(op)
        memo[name] = v
        return v

    return ev(out)


def patterns():
    y, x, c = np.meshgrid(np.arange(112), np.arange(112), np.arange(3), indexing="ij")
    a = (x * 3 + y * 5 + c * 50) % 256
    b = 127.5 + 100.0 * np.sin(0.1 * x + 0.07 * y + c)
    return np.stack([a, b]).astype(np.float64)


def main():
    nodes, weights, inp, out = load(sys.argv[1])
    y = run(nodes, weights, inp, out, patterns())
    json.dump({"output": out, "descriptors": y.round(6).tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
