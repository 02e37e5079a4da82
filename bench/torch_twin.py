#!/usr/bin/env python3
"""PyTorch twins of the engine's networks, timed the way `cemiface bench` times Candle.

Never part of the product or of CI: `cemiface bench --torch <python>` runs this script with a
PyTorch from PyPI installed in a virtual environment outside the repository, e.g.

    python3 -m venv ~/torchvenv && ~/torchvenv/bin/pip install torch numpy
    target/release/cemiface bench demo-64 --torch ~/torchvenv/bin/python

Input (stdin, JSON): {"unet": <UNetConfig as in configs/*.toml [model]>, "batches": [1, 8],
"iters": 3, "threads": 2, "seed": 0}. Output (stdout): one JSON object per timed row,
{"what": ..., "batch": b, "seconds": median}. The twins mirror backend/engine/src/diffusion/unet.rs
(guided-diffusion's ADM UNet: GroupNorm(32), AdaGN scale-shift, resblock up/down, legacy QKV
attention with the condition's keys/values prepended, CemiFace's condition path) and
dlib_resnet.rs (dlib's ResNet-29 metric network at 150×150), with the same shapes and FLOPs.
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def norm(ch):
    return nn.GroupNorm(min(32, ch), ch, eps=1e-5)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, resample):
        super().__init__()
        self.in_layers = nn.Sequential(norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_norm = norm(cout)
        self.out_conv = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        self.resample = resample

    def rs(self, x):
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return x

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.in_layers[2](self.rs(h))
        x = self.rs(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_conv(F.silu(self.out_norm(h) * (1 + scale) + shift))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch, head_ch):
        super().__init__()
        self.norm = norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv1d(ch, ch, 1)
        self.heads = ch // head_ch

    def forward(self, x, kv):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w)
        qkv = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * c // self.heads, h * w)
        ch = c // self.heads
        q, k, v = qkv.split(ch, dim=1)
        ekv = kv.reshape(b * self.heads, 2 * ch, -1)
        k = torch.cat([ekv[:, :ch], k], dim=2)
        v = torch.cat([ekv[:, ch:], v], dim=2)
        scale = 1 / math.sqrt(math.sqrt(ch))
        wts = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1)
        a = torch.einsum("bts,bcs->bct", wts, v).reshape(b, c, h * w)
        return (x + self.proj_out(a)).reshape(b, c, h, w)


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        mc, mult = cfg["model_channels"], cfg["channel_mult"]
        emb = 4 * mc
        cond = cfg["condition"]
        heads_ch = cfg["num_head_channels"]
        attn_res = cfg["attention_resolutions"]
        skip_down = cfg.get("skip_downsample_levels", [])
        self.mc = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.ModuleList([nn.ModuleList([nn.Conv2d(cfg["in_channels"], mc, 3, padding=1)])])
        chans, ch, ds = [mc], mc, 1
        attn_ch = None
        for level, m in enumerate(mult):
            for _ in range(cfg["num_res_blocks"]):
                layers = [ResBlock(ch, m * mc, emb, None)]
                ch = m * mc
                if ds in attn_res:
                    layers.append(Attention(ch, heads_ch))
                    attn_ch = ch
                self.inp.append(nn.ModuleList(layers))
                chans.append(ch)
            if level + 1 < len(mult):
                self.inp.append(nn.ModuleList([ResBlock(ch, ch, emb, None if level in skip_down else "down")]))
                chans.append(ch)
                ds *= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb, None), Attention(ch, heads_ch), ResBlock(ch, ch, emb, None)])
        attn_ch = attn_ch or ch
        self.out_blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(cfg["num_res_blocks"] + 1):
                layers = [ResBlock(ch + chans.pop(), m * mc, emb, None)]
                ch = m * mc
                if ds in attn_res:
                    layers.append(Attention(ch, heads_ch))
                if level > 0 and i == cfg["num_res_blocks"]:
                    layers.append(ResBlock(ch, ch, emb, None if (level - 1) in skip_down else "up"))
                    ds //= 2
                self.out_blocks.append(nn.ModuleList(layers))
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg["out_channels"], 3, padding=1))
        self.sim_proj = nn.Linear(1, cond["sim_dim"])
        self.att_proj = nn.Linear(cond["id_dim"] + cond["sim_dim"], cond["tokens"] * 2 * attn_ch)
        self.tokens = cond["tokens"]
        self.in_channels = cfg["in_channels"]

    def run(self, layers, h, emb, kv):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, Attention):
                h = layer(h, kv)
            else:
                h = layer(h)
        return h

    def forward(self, x, t, c_id, m):
        half = self.mc // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        emb = self.time_embed(torch.cat([torch.cos(args), torch.sin(args)], dim=1))
        c_att = self.att_proj(torch.cat([c_id, self.sim_proj(m[:, None])], dim=1))
        kv = c_att.reshape(x.shape[0], self.tokens, -1).transpose(1, 2)
        skips, h = [], x
        for block in self.inp:
            h = self.run(block, h, emb, kv)
            skips.append(h)
        h = self.run(self.mid, h, emb, kv)
        for block in self.out_blocks:
            h = self.run(block, torch.cat([h, skips.pop()], dim=1), emb, kv)
        return self.out(h)[:, : self.in_channels]


class DlibConv(nn.Module):
    def __init__(self, cin, cout, k, stride, valid, relu):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0 if valid else (k - 1) // 2)
        self.scale = nn.Parameter(torch.ones(cout, 1, 1))
        self.shift = nn.Parameter(torch.zeros(cout, 1, 1))
        self.relu = relu

    def forward(self, x):
        y = self.conv(x) * self.scale + self.shift
        return F.relu(y) if self.relu else y


class DlibResidual(nn.Module):
    def __init__(self, cin, cout, down):
        super().__init__()
        self.conv1 = DlibConv(cin, cout, 3, 2 if down else 1, down, True)
        self.conv2 = DlibConv(cout, cout, 3, 1, False, False)
        self.down, self.extra = down, cout - cin

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if not self.down:
            return F.relu(out + x)
        pooled = F.avg_pool2d(x, 2)
        out = F.pad(out, (0, pooled.shape[3] - out.shape[3], 0, pooled.shape[2] - out.shape[2]))
        pooled = F.pad(pooled, (0, 0, 0, 0, 0, self.extra))
        return F.relu(pooled + out)


class DlibResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = DlibConv(3, 32, 7, 2, True, True)
        plan = [(32, 32, False)] * 3 + [(32, 64, True)] + [(64, 64, False)] * 3 + [(64, 128, True)] \
            + [(128, 128, False)] * 2 + [(128, 256, True)] + [(256, 256, False)] * 2 + [(256, 256, True)]
        self.blocks = nn.Sequential(*[DlibResidual(a, b, d) for a, b, d in plan])
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x):
        x = F.max_pool2d(self.stem((x - 120.0) / 256.0), 3, 2)
        return self.fc(self.blocks(x).mean(dim=(2, 3)))


def median_seconds(iters, fn):
    fn()
    times = []
    for _ in range(max(1, iters)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(req.get("threads", 2))
    torch.manual_seed(req.get("seed", 0))
    cfg = req["unet"]
    unet = UNet(cfg)
    dlib = DlibResNet()
    s, d = cfg["image_size"], cfg["condition"]["id_dim"]
    for b in req["batches"]:
        x = torch.randn(b, cfg["in_channels"], s, s)
        t = torch.full((b,), 500)
        c_id = F.normalize(torch.randn(b, d), dim=1)
        m = torch.zeros(b)

        def fwd():
            with torch.no_grad():
                unet(x, t, c_id, m)

        def fwd_bwd():
            unet.zero_grad(set_to_none=True)
            unet(x, t, c_id, m).square().mean().backward()

        def ddim_step():
            with torch.no_grad():
                eps = unet(x, t, c_id, m)
                a_t, a_prev = 0.5, 0.6
                x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
                _ = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps

        chips = torch.rand(b, 3, 150, 150) * 255

        def dlib_fwd():
            with torch.no_grad():
                dlib(chips)

        chips_grad = chips.clone().requires_grad_(True)

        def dlib_fwd_bwd():
            dlib.zero_grad(set_to_none=True)
            dlib(chips_grad).square().sum().backward()

        for what, fn in [("unet forward", fwd), ("unet forward + backward", fwd_bwd), ("DDIM step", ddim_step),
                         ("dlib forward", dlib_fwd), ("dlib forward + backward", dlib_fwd_bwd)]:
            print(json.dumps({"what": what, "batch": b, "seconds": median_seconds(req["iters"], fn)}), flush=True)


if __name__ == "__main__":
    main()
