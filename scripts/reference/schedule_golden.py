#!/usr/bin/env python3
"""Golden values for the noise schedule and the DDIM update (backend/engine/src/{schedule,ddim}.rs).

Independent numpy computation of the linear-β schedule (T = 1000, 1e-4 … 0.02), ᾱ, the DDIM-20 timesteps
("leading" spacing, ᾱ_prev = 1 at the end), σ for η = 1, and one DDIM step on fixed small inputs.

    python3 scripts/reference/schedule_golden.py > backend/engine/tests/golden/schedule.json
"""
import json

import numpy as np

T = 1000
betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
ab = np.cumprod(1.0 - betas)


def ddim(steps, eta):
    r = T // steps
    ts = list(range((steps - 1) * r, -1, -r))
    out = []
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else None
        abp = ab[prev] if prev is not None else 1.0
        sigma = eta * np.sqrt((1 - abp) / (1 - ab[t])) * np.sqrt(1 - ab[t] / abp)
        out.append({"t": t, "alpha_bar": ab[t], "alpha_bar_prev": abp, "sigma": sigma})
    return ts, out


def step(c, x, eps, z):
    x0 = np.clip((x - np.sqrt(1 - c["alpha_bar"]) * eps) / np.sqrt(c["alpha_bar"]), -1, 1)
    d = np.sqrt(max(1 - c["alpha_bar_prev"] - c["sigma"] ** 2, 0))
    return np.sqrt(c["alpha_bar_prev"]) * x0 + d * eps + c["sigma"] * z, x0


ts, coeffs = ddim(20, 1.0)
x = np.array([-1.5, -0.4, 0.0, 0.3, 2.0, 0.9])
eps = np.array([0.2, -1.1, 0.5, 0.05, -0.3, 1.4])
z = np.array([0.7, 0.1, -0.6, 1.2, -0.2, 0.0])
steps = {}
for i in (0, 10, 19):
    xp, x0 = step(coeffs[i], x, eps, z)
    steps[str(i)] = {"x_prev": xp.tolist(), "x0": x0.tolist()}
xp0, _ = step(ddim(20, 0.0)[1][10], x, eps, z)
print(json.dumps({
    "alphas_cumprod": {str(t): ab[t] for t in (0, 1, 499, 950, 999)},
    "ddim20_timesteps": ts,
    "ddim20_eta1": coeffs,
    "inputs": {"x": x.tolist(), "eps": eps.tolist(), "z": z.tolist()},
    "steps_eta1": steps,
    "step10_eta0_x_prev": xp0.tolist(),
}, indent=1))
