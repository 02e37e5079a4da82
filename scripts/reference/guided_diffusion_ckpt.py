#!/usr/bin/env python3
"""A small unconditional guided-diffusion checkpoint, written the way `torch.save(model.state_dict(),
path)` writes one (the zip format of torch >= 1.6), without torch: numpy arrays, Python's pickle
with torch's class names, the zip layout `<name>/data.pkl` + `<name>/data/<key>` + `<name>/version`.

    python3 scripts/reference/guided_diffusion_ckpt.py backend/engine/tests/golden/guided_diffusion_small.pt

The key names and shapes follow guided-diffusion's `UNetModel.__init__` (openai/guided-diffusion,
unet.py) for the options DCFace/CemiFace use — `resblock_updown=True`, `use_scale_shift_norm=True`,
`learn_sigma=True` (so `out.2` has 2 × 3 channels: ε then the variance interpolation) — written out
here from that code's structure, independently of the engine's UNet. Values: seeded normal noise
(seed 20241203), f32. A JSON next to the checkpoint lists every key with its shape and the sum of
its values, which the engine's `--init` test compares against what it loaded.
"""
import collections
import io
import json
import pickle
import sys
import types
import zipfile

import numpy as np

# The small config (engine: UNetConfig { image_size 16, model_channels 32, channel_mult [1, 1],
# num_res_blocks 1, attention_resolutions [2], num_head_channels 32 }).
MC, MULT, NRB, ATTN_DS, IN_CH, OUT_CH = 32, (1, 1), 1, (2,), 3, 6


def state_dict_shapes():
    """(key, shape) in guided-diffusion's registration order."""
    keys = []
    ted = 4 * MC

    def lin(p, i, o):
        keys.extend([(f"{p}.weight", (o, i)), (f"{p}.bias", (o,))])

    def conv(p, i, o, k):
        keys.extend([(f"{p}.weight", (o, i, k, k)), (f"{p}.bias", (o,))])

    def norm(p, c):
        keys.extend([(f"{p}.weight", (c,)), (f"{p}.bias", (c,))])

    def resblock(p, ch, out):
        norm(f"{p}.in_layers.0", ch)
        conv(f"{p}.in_layers.2", ch, out, 3)
        lin(f"{p}.emb_layers.1", ted, 2 * out)  # use_scale_shift_norm
        norm(f"{p}.out_layers.0", out)
        conv(f"{p}.out_layers.3", out, out, 3)
        if out != ch:
            conv(f"{p}.skip_connection", ch, out, 1)

    def attention(p, ch):
        norm(f"{p}.norm", ch)
        keys.extend([(f"{p}.qkv.weight", (3 * ch, ch, 1)), (f"{p}.qkv.bias", (3 * ch,))])
        keys.extend([(f"{p}.proj_out.weight", (ch, ch, 1)), (f"{p}.proj_out.bias", (ch,))])

    lin("time_embed.0", MC, ted)
    lin("time_embed.2", ted, ted)
    conv("input_blocks.0.0", IN_CH, MC, 3)
    ch, ds, chans, n = MC, 1, [MC], 1
    for level, mult in enumerate(MULT):
        for _ in range(NRB):
            resblock(f"input_blocks.{n}.0", ch, mult * MC)
            ch = mult * MC
            if ds in ATTN_DS:
                attention(f"input_blocks.{n}.1", ch)
            chans.append(ch)
            n += 1
        if level != len(MULT) - 1:
            resblock(f"input_blocks.{n}.0", ch, ch)  # down=True: same keys as a plain block
            chans.append(ch)
            ds *= 2
            n += 1
    resblock("middle_block.0", ch, ch)
    attention("middle_block.1", ch)
    resblock("middle_block.2", ch, ch)
    n = 0
    for level, mult in list(enumerate(MULT))[::-1]:
        for i in range(NRB + 1):
            ich = chans.pop()
            resblock(f"output_blocks.{n}.0", ch + ich, MC * mult)
            ch = MC * mult
            k = 1
            if ds in ATTN_DS:
                attention(f"output_blocks.{n}.1", ch)
                k = 2
            if level and i == NRB:
                resblock(f"output_blocks.{n}.{k}", ch, ch)  # up=True
                ds //= 2
            n += 1
    norm("out.0", ch)
    conv("out.2", MC, OUT_CH, 3)
    return keys


# Stand-ins under torch's names, so pickle writes the GLOBALs torch.load expects.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    raise RuntimeError("only for pickling")


FloatStorage.__module__ = "torch"
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage = FloatStorage
torch._utils = torch_utils
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return (_rebuild_tensor_v2,
                (self.storage, 0, tuple(self.shape), stride, False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def main(out):
    rng = np.random.default_rng(20241203)
    state = collections.OrderedDict()
    blobs, summary = {}, {}
    for i, (key, shape) in enumerate(state_dict_shapes()):
        a = (rng.standard_normal(shape) * 0.05).astype("<f4")
        blobs[str(i)] = a.tobytes()
        state[key] = Tensor(Storage(str(i), a.size), shape)
        summary[key] = {"shape": list(shape), "sum": float(a.astype(np.float64).sum())}
    name = "guided_diffusion_small"
    with open(out, "wb") as f:
        zf = zipfile.ZipFile(f, "w", zipfile.ZIP_STORED)
        buf = io.BytesIO()
        TorchPickler(buf, protocol=2).dump(state)

        def put(path, data):  # fixed timestamps: the same bytes on every run
            zf.writestr(zipfile.ZipInfo(path, date_time=(2024, 12, 3, 0, 0, 0)), data)

        put(f"{name}/data.pkl", buf.getvalue())
        for key, blob in blobs.items():
            put(f"{name}/data/{key}", blob)
        put(f"{name}/version", "3\n")
        zf.close()
    with open(out.rsplit(".", 1)[0] + ".json", "w") as f:
        json.dump({"out_channels": OUT_CH, "tensors": summary}, f, indent=1, sort_keys=True)
    print(f"{out}: {len(summary)} tensors, {sum(int(np.prod(v['shape'])) for v in summary.values())} values")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "guided_diffusion_small.pt")
