#!/usr/bin/env python3
"""What would move a generator's Spearman: reads report-control's samples.json and recomputes one
judge's Spearman (m against achieved similarity, every sample, ties averaged as report-control does)
with the achieved similarities of some targets shifted, or every target's spread scaled about its
mean. docs/latent-generator.md §5 ("What the Spearman bar needs") quotes its output.

    python3 scripts/control_whatif.py report-control/samples.json [--judge mobileface]

Plain Python (no numpy): it runs wherever report-control's output is.
"""
import argparse
import json


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5


def pooled(m, rows):
    xs, ys = [], []
    for row in rows:
        for mk, s in zip(m, row):
            xs.append(mk)
            ys.append(s)
    return spearman(xs, ys)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", help="samples.json written by cemiface report-control")
    ap.add_argument("--judge", default="mobileface", help="judge name prefix (default mobileface)")
    args = ap.parse_args()
    with open(args.samples) as f:
        data = json.load(f)
    m = data["m"]
    names = [n for n in data["similarity"] if n.startswith(args.judge)]
    if not names:
        raise SystemExit(f"{args.samples}: no judge named {args.judge}… (have {list(data['similarity'])})")
    rows = data["similarity"][names[0]]
    sources = data["sources"]
    print(f"{names[0]}: {len(rows)} inquiries × {len(m)} targets")
    print(f"| change | Spearman |")
    print(f"|---|---|")
    print(f"| as measured | {pooled(m, rows):.3f} |")
    dcgan = [r for r, s in zip(rows, sources) if s == "dcgan"]
    if dcgan and len(dcgan) < len(rows):
        print(f"| DCGAN inquiries only | {pooled(m, dcgan):.3f} |")
    negative = [k for k, mk in enumerate(m) if mk < 0]
    lowest = min(range(len(m)), key=lambda k: m[k])
    for d in (0.05, 0.10, 0.15):
        shifted = [[s - d if k == lowest else s for k, s in enumerate(r)] for r in rows]
        print(f"| m = {m[lowest]:g} lower by {d:.2f} | {pooled(m, shifted):.3f} |")
    for d in (0.05, 0.10):
        shifted = [[s - d if k in negative else s for k, s in enumerate(r)] for r in rows]
        print(f"| every m < 0 lower by {d:.2f} | {pooled(m, shifted):.3f} |")
    means = [sum(r[k] for r in rows) / len(rows) for k in range(len(m))]
    for scale in (0.9, 0.8):
        squeezed = [[means[k] + (s - means[k]) * scale for k, s in enumerate(r)] for r in rows]
        print(f"| every spread × {scale} | {pooled(m, squeezed):.3f} |")


if __name__ == "__main__":
    main()
