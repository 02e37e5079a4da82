#!/usr/bin/env python3
"""Golden descriptors and pairwise distances from dlib itself, for the identity-pipeline tests
(backend/engine/tests/identity_pipeline.rs).

dlib's own pipeline on the public-domain photos of the face_recognition 1.3.0 sdist: HOG detector
(upsample 1), 5-point shape predictor, `compute_face_descriptor` (150×150 chip, padding 0.25, no
jitter) with the original float weights of `dlib_face_recognition_resnet_model_v1.dat`.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy pillow dlib-bin==20.0.1.post1
    pip download --no-deps face-recognition-models==0.3.0 && tar xzf face_recognition_models-0.3.0.tar.gz
    /tmp/v/bin/python scripts/reference/dlib_golden.py assets/face_recognition \
        face_recognition_models-0.3.0/face_recognition_models/models > backend/engine/tests/golden/dlib_photos.json
"""
import itertools
import json
import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


def main():
    photos, models = Path(sys.argv[1]), Path(sys.argv[2])
    detector = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    desc = {}
    for name in PHOTOS:
        img = np.asarray(Image.open(photos / name).convert("RGB"))
        dets = detector(img, 1)
        assert len(dets) >= 1, name
        d = max(dets, key=lambda r: r.area())
        shape = sp(img, d)
        desc[name] = np.array(net.compute_face_descriptor(img, shape))
        print(name, len(dets), "faces; box", d, file=sys.stderr)
    dist = {f"{a}|{b}": round(float(np.linalg.norm(desc[a] - desc[b])), 5) for a, b in itertools.combinations(PHOTOS, 2)}
    json.dump({"dlib": dlib.__version__, "distances": dist,
               "descriptors": {k: [round(float(x), 6) for x in v] for k, v in desc.items()}}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
