"""Which crop and input size the identity descriptor should get, measured on real photos and CK+48.

    uv run python benchmarks/identity_geometry.py

The FaceRes descriptor (fecsearch/weights/faceres-mobilenet-v1.md) was trained on VGGFace2's
loose face crops. fecsearch aligns faces by their eyes, so the question is how much of the head an
aligned crop should hold, and at what size. Same-person vs different-person AUC of the cosine of
descriptors:
  - photos: the largest face of each of ../shared/data/photos, MTCNN and alignment as indexing does
    them, over the 299 labelled pairs of photos/master.csv (38 same-person);
  - CK+48: every pair of its 981 faces (118 subjects), each image taken whole as the face.
Speed: descriptors a second on this CPU, torch, batches of 32.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from fecsearch.faces.align import FaceGeometry, align_detected
from fecsearch.faces.detect import FaceDetector, largest_face
from fecsearch.faces.images import load_image
from fecsearch.models.mobilenet import MobileNetV1, load_trunk_state
from fecsearch.models.trunks import load_faceres_weights

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# eye distance as a fraction of the crop's width, and the eyes' height as a fraction of it
GEOMETRIES = {"paper 0.245 / 0.40": (0.2455, 0.40), "looser 0.20 / 0.40": (0.20, 0.40),
              "loosest 0.17 / 0.42": (0.17, 0.42), "tighter 0.30 / 0.38": (0.30, 0.38)}


def descriptors(network, crops: list[Image.Image]) -> np.ndarray:
    pixels = torch.from_numpy(np.stack([np.asarray(c.convert("RGB")) for c in crops]).astype(np.float32))
    pixels = pixels.permute(0, 3, 1, 2)
    with torch.inference_mode():
        d = torch.cat([network.descriptor(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
    return torch.nn.functional.normalize(d, dim=1).numpy()


def main() -> None:
    torch.set_num_threads(2)
    network = load_trunk_state(MobileNetV1(), load_faceres_weights()).eval()
    detector = FaceDetector()
    photos = sorted((DATA / "photos").glob("*.jpg"))
    faces = {}
    for path in photos:
        image = load_image(path)
        found = detector.detect_one(image)
        if found:
            faces[path.name] = (image, found[largest_face(found)])
    pairs = [(a, b, d.strip() == "Yes") for a, b, d in list(csv.reader(open(DATA / "photos" / "master.csv")))[1:]
             if a in faces and b in faces]
    ck = sorted((DATA / "ckplus48").glob("*/*.png"))
    subjects = np.array([p.name.split("_")[0] for p in ck])
    upper = np.triu_indices(len(ck), 1)
    same_ck = (subjects[:, None] == subjects[None, :])[upper]
    ck_images = [load_image(p) for p in ck]
    report = {"photo_pairs": len(pairs), "same_person_pairs": sum(s for *_, s in pairs)}
    for size in (112, 160, 224):
        start = time.perf_counter()
        d = descriptors(network, [im.resize((size, size), Image.BICUBIC) for im in ck_images])
        rate = len(ck_images) / (time.perf_counter() - start)
        report[f"{size}px"] = {"ckplus_auc": round(float(roc_auc_score(same_ck, (d @ d.T)[upper])), 4),
                               "descriptors_per_s": round(rate, 1)}
        for name, (eye, height) in GEOMETRIES.items():
            geometry = FaceGeometry(size, eye * size, 0.5, height)
            names = list(faces)
            d = descriptors(network, [align_detected(*faces[n], geometry) for n in names])
            row = {n: i for i, n in enumerate(names)}
            scores = [float(d[row[a]] @ d[row[b]]) for a, b, _ in pairs]
            report[f"{size}px"][f"photos_auc {name}"] = round(float(roc_auc_score([s for *_, s in pairs], scores)), 4)
        print(json.dumps({f"{size}px": report[f"{size}px"]}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
