#!/usr/bin/env python3
"""Import cycles between the server's modules (scripts/check-layers.sh runs it).

Modules are the top-level ones (`cli`, `commands`, `demo`, `jobs`, ...) with `web/` split into its
files: the router and the state (`web::router`, `web::state`) wire every layer together and are
the only modules allowed on a cycle. Prints each cycle found; exit 1 if any."""
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "backend", "server", "src")
WIRING = {"web::router", "web::state"}


def module(rel):
    parts = rel[:-3].split("/")
    return f"web::{parts[1]}" if parts[0] == "web" and len(parts) > 1 else parts[0]


def target(top, sub):
    return f"web::{sub}" if top == "web" and sub and os.path.exists(os.path.join(SRC, "web", sub + ".rs")) else top


edges = collections.defaultdict(set)
for root, _, files in os.walk(SRC):
    for name in files:
        if not name.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(root, name), SRC)
        src = module(rel)
        text = open(os.path.join(root, name), encoding="utf-8").read()
        for top, sub in re.findall(r"\bcrate::([a-z_]+)(?:::([a-z_]+))?", text):
            dst = target(top, sub)
            if dst != src and src not in WIRING and os.path.exists(os.path.join(SRC, top + ".rs")):
                edges[src].add(dst)

# Tarjan's strongly connected components: a component of two or more modules is a cycle.
index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            cycles.append(sorted(comp))


for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
    if v not in index:
        visit(v)
for c in cycles:
    print("import cycle: " + " ↔ ".join(c), file=sys.stderr)
sys.exit(1 if cycles else 0)
