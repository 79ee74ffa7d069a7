"""How well the FaceRes descriptor tells CK+48's people apart, by input size and pixel scaling.

    uv run python benchmarks/faceres_identity.py

Same-person vs different-person AUC of the cosine similarity of 1024-d descriptors over all pairs
of CK+48's 981 faces (118 subjects), at 224 and 112 px, with pixel values 0..255 (what the
network was trained on), 0..1 and -1..1.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from fecsearch.faces.images import load_image
from fecsearch.models.mobilenet import MobileNetV1, load_trunk_state
from fecsearch.models.trunks import load_faceres_weights

CKPLUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ckplus48"
SCALINGS = {"0..255": lambda x: x, "0..1": lambda x: x / 255, "-1..1": lambda x: x / 127.5 - 1}


def main() -> None:
    paths = sorted(CKPLUS.glob("*/*.png"))
    subjects = np.array([p.name.split("_")[0] for p in paths])
    upper = np.triu_indices(len(paths), 1)
    same = (subjects[:, None] == subjects[None, :])[upper]
    network = load_trunk_state(MobileNetV1(), load_faceres_weights()).eval()
    report = {}
    for size in (224, 112):
        pixels = torch.from_numpy(np.stack([np.asarray(load_image(p).convert("RGB").resize((size, size), Image.BICUBIC))
                                            for p in paths]).astype(np.float32)).permute(0, 3, 1, 2)
        for name, scale in SCALINGS.items():
            with torch.inference_mode():
                d = torch.cat([network.descriptor(scale(pixels[i:i + 128])) for i in range(0, len(pixels), 128)])
            d = torch.nn.functional.normalize(d, dim=1).numpy()
            report[f"{size}px {name}"] = round(float(roc_auc_score(same, (d @ d.T)[upper])), 4)
            print(f"{size}px, input {name}: AUC {report[f'{size}px {name}']}", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
