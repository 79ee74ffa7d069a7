"""Measure where the eyes sit in FER+ crops, so photos can be aligned to look like them.

The lite models are trained on FER2013's 48x48 crops; at query time faces found in photos are
aligned with this geometry (models/registry.py, LITE_GEOMETRY) so they look like those crops.

    uv run python benchmarks/measure_fer_geometry.py [--n 2000]
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from fecsearch.faces.detect import DetectorConfig, FaceDetector

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ferplus" / "train"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    paths = sorted(args.data.glob("*.png"))
    random.Random(0).shuffle(paths)
    detector = FaceDetector(DetectorConfig(canvas_size=320, border=0.2, min_face_size=40))
    eyes = []
    for i in range(0, args.n, 32):
        batch = [Image.open(p).convert("RGB") for p in paths[i:i + 32]]
        for faces in detector.detect(batch):
            if len(faces) == 1:
                eyes.append(faces[0].landmarks[:2])
    eyes = np.array(eyes)  # (n, 2, 2) in 48-px coordinates
    left, right = eyes[:, 0], eyes[:, 1]
    distance = np.hypot(*(right - left).T)
    centre = (left + right) / 2
    roll = np.degrees(np.arctan2(*(right - left).T[::-1]))
    result = {
        "faces_measured": int(len(eyes)), "images_tried": args.n,
        "eye_distance_px_median": round(float(np.median(distance)), 2),
        "eye_centre_x_frac_median": round(float(np.median(centre[:, 0]) / 48), 3),
        "eye_centre_y_frac_median": round(float(np.median(centre[:, 1]) / 48), 3),
        "roll_deg_median_abs": round(float(np.median(np.abs(roll))), 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
