#!/usr/bin/env python3
"""PyTorch twins of the engine's networks, timed the way `cemiface bench` times Candle.

Never part of the product or of CI: `cemiface bench --torch <python>` runs this script with a
PyTorch from PyPI installed in a virtual environment outside the repository, e.g.

    python3 -m venv ~/torchvenv && ~/torchvenv/bin/pip install torch numpy
    target/release/cemiface bench demo-64 --torch ~/torchvenv/bin/python

Input (stdin, JSON): {"unet": <UNetConfig as in configs/*.toml [model]>, "batches": [1, 8],
"iters": 3, "threads": 2, "seed": 0, "latent": {"denoiser", "train", "optimizer" of
configs/latent-dcgan.toml} (optional: the latent preset's training step)}. Output (stdout): one JSON object per timed row,
{"what": ..., "batch": b, "seconds": median}. The twins mirror backend/engine/src/diffusion/unet.rs
(guided-diffusion's ADM UNet: GroupNorm(32), AdaGN scale-shift, resblock up/down, legacy QKV
attention with the condition's keys/values prepended, CemiFace's condition path) and
dlib_resnet.rs (dlib's ResNet-29 metric network at 150×150), with the same shapes and FLOPs, and the
latent preset's training step (denoiser.rs, dcgan.rs, latent/trainer.rs).
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


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


def normalise(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-5)


class LatentDenoiser(nn.Module):
    """diffusion/latent/denoiser.rs: residual MLP over z with FiLM from [time, Linear(m), Linear(C_id)]."""

    def __init__(self, d):
        super().__init__()
        e, h, z, i = d["emb_dim"], d["hidden"], d["latent_dim"], d["id_dim"]
        self.e, self.h = e, h
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.sim, self.id = nn.Linear(1, e), nn.Linear(i, e)
        self.cond = nn.Sequential(nn.Linear(3 * e, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.input = nn.Linear(2 * z, h)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"film": nn.Linear(e, 2 * h), "fc1": nn.Linear(h, h), "fc2": nn.Linear(h, h)})
            for _ in range(d["blocks"]))
        self.out = nn.Linear(h, z)

    def forward(self, z_t, t, z_a, c_id, m):
        cond = self.cond(torch.cat([self.time(timestep_embedding(t, self.e)), self.sim(m[:, None]), self.id(c_id)], 1))
        h = self.input(torch.cat([z_t, z_a], 1))
        for b in self.blocks:
            scale, shift = b["film"](cond).chunk(2, dim=1)
            h = h + b["fc2"](F.silu(b["fc1"](F.silu(normalise(h) * (1 + scale) + shift))))
        return self.out(F.silu(normalise(h)))


def dcgan():
    """data/dcgan.rs: the PyTorch DCGAN tutorial generator, 100 → 3×64×64."""
    w = [100, 512, 256, 128, 64, 3]
    layers = []
    for i in range(5):
        layers.append(nn.ConvTranspose2d(w[i], w[i + 1], 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False))
        layers += [nn.BatchNorm2d(w[i + 1]), nn.ReLU()] if i < 4 else [nn.Tanh()]
    return nn.Sequential(*layers).eval()


def latent_train_step(req, dlib):
    """diffusion/latent/trainer.rs `train_step`: MSE(x̂0) on batch_size teacher pairs plus λ·SimMat
    on sim_mat_batch more, through G, the chip resampling and dlib (frozen); AdamW with clipping; EMA."""
    d, tr, opt_cfg = req["denoiser"], req["train"], req["optimizer"]
    net, gen = LatentDenoiser(d), dcgan()
    for p in list(gen.parameters()) + list(dlib.parameters()):
        p.requires_grad_(False)
    ema = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=opt_cfg["lr"], weight_decay=opt_cfg.get("weight_decay", 0.0))
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    bm, bs, z = tr["batch_size"], tr["sim_mat_batch"], d["latent_dim"]
    b = bm + bs
    mu = torch.randn(128)

    def step():
        z0, z_a, noise = torch.randn(b, z), torch.randn(b, z), torch.randn(b, z)
        c_id = F.normalize(torch.randn(b, d["id_dim"]), dim=1)
        m, t = torch.rand(b) * 2 - 1, torch.randint(0, 1000, (b,))
        a = abar[t][:, None]
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        x0 = z_a + net(z_t, t, z_a, c_id, m)
        _eps = (z_t - a.sqrt() * x0) / (1 - a).sqrt()
        mse = (x0 - z0).square().mean()
        img = gen(x0[bm:].clamp(-tr["x0_clip"], tr["x0_clip"]).reshape(bs, z, 1, 1))
        chips = F.interpolate(img, size=(150, 150), mode="bilinear", align_corners=False)
        s = F.cosine_similarity(dlib(chips * 127.5 + 127.5) - mu, c_id[bm:], dim=1)
        gamma = t[bm:].float() / 1000
        sim_mat = ((1 - gamma) * (torch.rand(bs) - s).abs() + gamma * (m[bm:] - s).abs()).mean()
        loss = mse + tr["lambda"] * sim_mat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), opt_cfg["grad_clip"])
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema, net.parameters()):
                e.lerp_(p, 1 - tr["ema_max_decay"])

    return step


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
    e_id = DlibResNet()  # E_id as training uses it: frozen weights, gradient for the input only
    for p in e_id.parameters():
        p.requires_grad_(False)
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

        def e_id_fwd():
            with torch.no_grad():
                e_id(chips)

        def e_id_fwd_bwd():
            chips_grad.grad = None
            e_id(chips_grad).square().sum().backward()

        for what, fn in [("unet forward", fwd), ("unet forward + backward", fwd_bwd), ("DDIM step", ddim_step),
                         ("dlib forward", dlib_fwd), ("dlib forward + backward", dlib_fwd_bwd),
                         ("E_id forward (dlib, frozen)", e_id_fwd),
                         ("E_id forward + backward (dlib, frozen)", e_id_fwd_bwd)]:
            print(json.dumps({"what": what, "batch": b, "seconds": median_seconds(req["iters"], fn)}), flush=True)
    if "latent" in req:
        lat = req["latent"]
        what = f"latent-dcgan train step ({lat['train']['batch_size']} MSE + {lat['train']['sim_mat_batch']} SimMat)"
        seconds = median_seconds(req["iters"], latent_train_step(lat, dlib))
        print(json.dumps({"what": what, "batch": lat["train"]["sim_mat_batch"], "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
