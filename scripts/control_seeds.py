#!/usr/bin/env python3
"""One generator's control over several sets of held-out inquiries: reads the samples.json of
report-control runs that differ only in --seed and prints, per run and pooled, each judge's Spearman
(m against achieved similarity, ties averaged as report-control does) and the face rate by m with
its binomial standard error. Seed-to-seed swings at 104 inquiries reach 0.015 in Spearman and 0.09–0.12
in face rate at one m, so bars are judged on the pool (docs/latent-generator.md §5).

    python3 scripts/control_seeds.py runs/rc/seed7/samples.json runs/rc/seed1/samples.json …

Plain Python (no numpy).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from control_whatif import pooled  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", nargs="+", help="samples.json files written by cemiface report-control")
    args = ap.parse_args()
    runs = []
    for path in args.samples:
        with open(path) as f:
            data = json.load(f)
        if runs and data["m"] != runs[0][1]["m"]:
            raise SystemExit(f"{path}: targets {data['m']} differ from {runs[0][0]}'s {runs[0][1]['m']}")
        runs.append((path, data))
    m = runs[0][1]["m"]
    judges = list(runs[0][1]["similarity"])
    head = ["run", "inquiries"] + [f"ρ {j.split()[0]}" for j in judges] + [f"face m = {mk:g}" for mk in m]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))

    def line(name, datas):
        n = sum(len(d["sources"]) for d in datas)
        cells = [name, str(n)]
        for j in judges:
            rows = [r for d in datas for r in d["similarity"][j]]
            cells.append(f"{pooled(m, rows):.3f}")
        for k in range(len(m)):
            found = [row[k] for d in datas for row in d["face_found"]]
            p = sum(found) / len(found)
            se = (p * (1 - p) / len(found)) ** 0.5
            cells.append(f"{p:.3f} ± {se:.3f}" if len(datas) > 1 else f"{p:.2f}")
        print("| " + " | ".join(cells) + " |")

    for path, data in runs:
        # runs/x/samples.json is labelled "x"; docs/…/shipped-seed2-samples.json "shipped-seed2"
        stem = os.path.splitext(os.path.basename(path))[0]
        label = os.path.basename(os.path.dirname(os.path.abspath(path))) if stem == "samples" else stem.removesuffix("-samples")
        line(label, [data])
    if len(runs) > 1:
        line("pooled", [d for _, d in runs])
    for j in judges:
        means = []
        for k in range(len(m)):
            vals = [row[k] for _, d in runs for row in d["similarity"][j]]
            means.append(sum(vals) / len(vals))
        print(f"{j} pooled means by m: " + " / ".join(f"{v:+.3f}" for v in means))


if __name__ == "__main__":
    main()
