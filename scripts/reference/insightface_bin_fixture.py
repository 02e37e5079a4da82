#!/usr/bin/env python3
"""An insightface `.bin` verification set written exactly as insightface writes them, and the
accuracy numpy's re-implementation of insightface's 10-fold protocol gives on it.

    # 1. aligned crops of the six public-domain photos (cemiface align … -o crops/<name>.jpg)
    python3 scripts/reference/insightface_bin_fixture.py make crops backend/server/tests/golden/photos.bin
    # 2. the engine's flip-fused embeddings of its images
    cemiface eval backend/server/tests/golden/photos.bin --save-embeddings photos_embeddings.json
    # 3. the expected result on those embeddings
    python3 scripts/reference/insightface_bin_fixture.py verify photos_embeddings.json \\
        > backend/server/tests/golden/photos_bin.json

`make` pairs every two crops (same person: both names start with "obama"), reads the files' bytes
and, as insightface's `dataset2bin`/`lfw2pack` do, calls
`pickle.dump((bins, issame_list), f, protocol=pickle.HIGHEST_PROTOCOL)`.
"""
import itertools
import json
import os
import pickle
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from verification_golden import ten_fold  # noqa: E402


def make(crops, out):
    names = sorted(f for f in os.listdir(crops) if f.endswith((".jpg", ".png")))
    bins, issame_list = [], []
    for a, b in itertools.combinations(names, 2):
        for n in (a, b):
            with open(os.path.join(crops, n), "rb") as f:
                bins.append(f.read())
        issame_list.append(a.startswith("obama") == b.startswith("obama"))
    with open(out, "wb") as f:
        pickle.dump((bins, issame_list), f, protocol=pickle.HIGHEST_PROTOCOL)


def verify(path):
    (saved,) = json.load(open(path)).values()
    emb = np.asarray(saved["embeddings"], dtype=np.float64)
    acc, std, th, _ = ten_fold(emb[0::2], emb[1::2], np.asarray(saved["same"]))
    print(json.dumps({"accuracy": acc, "std": std, "threshold": th,
                      "embeddings": saved["embeddings"]}))


if __name__ == "__main__":
    {"make": lambda: make(sys.argv[2], sys.argv[3]), "verify": lambda: verify(sys.argv[2])}[sys.argv[1]]()
