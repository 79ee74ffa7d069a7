"""Is the largest face the same when MTCNN's finest pyramid levels are left out, and what does it save?

    uv run python benchmarks/probe_largest_face.py [--collages 40] [--rounds 3]

On ../shared/data/photos and on collages of them (tests/helpers/collages.py: 2 to 5 photos shrunk
to 8-60% of a canvas, so faces of many sizes sit side by side), for every number of finest levels
left out: is the largest face (box, landmarks, probability, to the bit) the one the full pyramid
finds, against how many of the last left-out level's P-Net windows that face spans. That ratio is
what FaceDetector.detect_largest keeps at LARGEST_MARGIN or more. Then detect_largest itself
against detect_one (the full pyramid, which indexing runs): the same face on every image, and the
median time of each, timed in turns on the same images, on all of them and on those where
detect_largest needed every level (its first guess was wrong).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from photos_index import PHOTOS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from collages import collage  # noqa: E402

from fecsearch.faces.detect import largest_face  # noqa: E402
from fecsearch.faces.detect import LARGEST_MARGIN, FaceDetector  # noqa: E402
from fecsearch.faces.images import load_image  # noqa: E402


def same(a, b) -> bool:
    return (a is not None and b is not None and a.box == b.box and a.probability == b.probability
            and np.array_equal(a.landmarks, b.landmarks))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--collages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    photos = sorted(PHOTOS.glob("*.jpg"))
    images = [("photo", p.name, load_image(p)) for p in photos]
    images += [("collage", f"collage{seed}", collage(photos, seed)) for seed in range(args.collages)]
    detector = FaceDetector()  # a query's: MTCNN in ONNX Runtime, pyramid levels on every core

    ratios = {"same": [], "changed": []}
    references = []
    for kind, name, image in images:
        faces = detector.detect_one(image)
        reference = faces[largest_face(faces)] if faces else None
        references.append(reference)
        if reference is None:
            continue
        board, placed = detector._letterbox(image)
        pyramid = detector.cascade.pyramid(board, placed.region)
        size = math.sqrt(reference.area) * placed.scale
        for skip in range(1, len(pyramid.scales)):
            found = detector._faces(pyramid.detect(range(skip, len(pyramid.scales))), image, placed)
            largest = max(found, key=lambda f: f.area) if found else None
            ratio = size / pyramid.window(skip - 1)
            ratios["same" if same(largest, reference) else "changed"].append(round(ratio, 2))

    agree, counted, times = 0, 0, {"detect_one": [], "detect_largest": []}
    every_level = {"detect_one": [], "detect_largest": []}  # the images on which detect_largest needed every level
    for round_ in range(args.rounds):
        for (kind, name, image), reference in zip(images, references):
            start = time.perf_counter()
            detector.detect_one(image)
            full = time.perf_counter() - start
            start = time.perf_counter()
            face, number, count = detector.detect_largest(image)
            largest = time.perf_counter() - start
            times["detect_one"].append(full)
            times["detect_largest"].append(largest)
            if count is not None:
                every_level["detect_one"].append(full)
                every_level["detect_largest"].append(largest)
            if round_ == 0:
                agree += same(face, reference) or (face is None and reference is None)
                counted += count is not None
    p50 = {k: round(float(np.median(v)) * 1e3, 1) for k, v in times.items()}
    p50_every = {k: round(float(np.median(v)) * 1e3, 1) for k, v in every_level.items() if v}
    changed = sorted(ratios["changed"])
    print(json.dumps({
        "images": {"photos": len(photos), "collages": args.collages},
        "levels_left_out": {
            "trials": len(ratios["same"]) + len(changed),
            "largest_face_changed": len(changed),
            "highest_ratio_where_it_changed": changed[-1] if changed else None,
            "trials_at_or_above_margin": sum(r >= LARGEST_MARGIN for r in ratios["same"] + changed),
            "changed_at_or_above_margin": sum(r >= LARGEST_MARGIN for r in changed),
            "changed_by_ratio": {f"{lo}-{lo + 0.5}": sum(lo <= r < lo + 0.5 for r in changed)
                                 for lo in np.arange(0.0, LARGEST_MARGIN, 0.5).tolist()},
        },
        "margin": LARGEST_MARGIN,
        "detect_largest": {"same_face_as_full_pyramid": agree, "of": len(images),
                           "answered_with_every_level (counted)": counted},
        "p50_ms": p50, "ratio": round(p50["detect_largest"] / p50["detect_one"], 2),
        "images_needing_every_level": {"p50_ms": p50_every, "ratio": round(
            p50_every["detect_largest"] / p50_every["detect_one"], 2) if p50_every else None},
    }, indent=2))


if __name__ == "__main__":
    main()
