#!/usr/bin/env python3
"""Golden values for 10-fold verification (backend/engine/src/recognition/verification.rs), re-implementing
insightface's eval/verification.py `calculate_roc`/`calculate_accuracy` in plain numpy: squared L2 between
L2-normalised embeddings, thresholds arange(0, 4, 0.01), contiguous KFold(10, shuffle=False), the best
train-fold threshold (first argmax) applied to the test fold; accuracy mean and population std.

    python3 scripts/reference/verification_golden.py > backend/engine/tests/golden/verification.json
"""
import json

import numpy as np

def normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


thresholds = np.arange(0, 4, 0.01)


def accuracy(th, dist, same):
    pred = dist < th
    tp = np.sum(pred & same)
    tn = np.sum(~pred & ~same)
    return (tp + tn) / dist.size


def ten_fold(a, b, issame):
    """insightface's protocol: (mean accuracy, population std, mean threshold, fold accuracies)."""
    n = len(issame)
    dist = np.sum((normalize(a) - normalize(b)) ** 2, 1)
    folds = []
    start = 0
    for i in range(10):
        size = n // 10 + (1 if i < n % 10 else 0)
        folds.append(np.arange(start, start + size))
        start += size
    accs, ths = [], []
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        best = int(np.argmax([accuracy(t, dist[train], issame[train]) for t in thresholds]))
        ths.append(thresholds[best])
        accs.append(accuracy(thresholds[best], dist[test], issame[test]))
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(ths)), [float(x) for x in accs]


if __name__ == "__main__":
    rng = np.random.default_rng(5)
    n, d = 303, 6
    issame = rng.random(n) < 0.5
    a = rng.normal(size=(n, d))
    noise = rng.normal(size=(n, d))
    b = np.where(issame[:, None], a + 0.9 * noise, noise)
    a = np.round(a, 4)
    b = np.round(b, 4)
    acc, std, th, fold_accs = ten_fold(a, b, issame)
    print(json.dumps({"a": a.tolist(), "b": b.tolist(), "issame": issame.tolist(),
                      "accuracy": acc, "std": std, "threshold": th, "fold_accuracies": fold_accs}))
