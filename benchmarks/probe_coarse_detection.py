"""Would a coarser detection pass make queries by image faster without changing their answers?

    uv run python benchmarks/probe_coarse_detection.py [--index PATH]

A query needs only the largest face, so MTCNN could skip the pyramid levels that only find small
faces (a larger min_face_size). This measures, on copies of ../shared/data/photos queried against
an index of the originals, for each min_face_size: detection time per photo, how far the largest
face's vector moves from the one indexing computes (min_face_size 20), and whether the top result
stays the same. As a yardstick for MTCNN's own jitter: the same photos saved again as JPEG
(quality 95) with the indexing detector. Last, where the indexing detector's time goes: each of
its three networks' run time per photo (ONNX Runtime), the rest being resampling and box work.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from photos_index import PHOTOS, photos_index

from fecsearch.faces.images import decode_image, load_image
from fecsearch.query.search import Searcher


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, default=None)
    args = parser.parse_args()
    searcher = Searcher(photos_index(args.index))
    pipeline = searcher.pipeline(False)
    cascade = pipeline.detector.cascade
    images = [load_image(p) for p in sorted(PHOTOS.glob("*.jpg"))]

    def vector(image):
        face, _, _ = pipeline.face_of(image)
        return pipeline.embed([face])[0] if face is not None else None

    def top(v):
        return searcher.search(v, 1)[0].face_id

    reference = [vector(im) for im in images]
    report = {}
    for min_face in (20, 40, 60, 120):
        cascade.min_face_size = min_face
        seconds, moved, same = [], [], 0
        for image, ref in zip(images, reference):
            start = time.perf_counter()
            pipeline.detector.detect_one(image)
            seconds.append(time.perf_counter() - start)
            v = vector(image)
            if v is None:
                continue
            moved.append(float(np.linalg.norm(v - ref)))
            same += top(v) == top(ref)
        report[f"min_face_size_{min_face}"] = {
            "detect_ms_p50": round(float(np.median(seconds)) * 1e3, 1), "faces_found_in": len(moved),
            "vector_moved_p50": round(float(np.median(moved)), 4), "vector_moved_max": round(max(moved), 4),
            "same_top_result": f"{same}/{len(images)}"}
    cascade.min_face_size = 20
    moved, same = [], 0
    for image, ref in zip(images, reference):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        v = vector(decode_image(buffer.getvalue()))
        if v is not None:
            moved.append(float(np.linalg.norm(v - ref)))
            same += top(v) == top(ref)
    report["resaved_jpeg_q95"] = {"vector_moved_p50": round(float(np.median(moved)), 4),
                                  "vector_moved_max": round(max(moved), 4), "same_top_result": f"{same}/{len(images)}"}
    report["network_ms_per_photo_min_face_size_20"] = network_times(pipeline.detector, images)
    print(json.dumps(report, indent=2))


def network_times(detector, images) -> dict:
    networks = detector.cascade.networks
    spent = {"pnet": 0.0, "rnet": 0.0, "onet": 0.0}
    for name in spent:
        run = getattr(networks, name)

        def timed(x, run=run, name=name):
            start = time.perf_counter()
            out = run(x)
            spent[name] += time.perf_counter() - start
            return out

        setattr(networks, name, timed)
    start = time.perf_counter()
    for image in images:
        detector.detect_one(image)
    total = time.perf_counter() - start
    out = {name: round(seconds / len(images) * 1e3, 1) for name, seconds in spent.items()}
    return {**out, "whole_detection": round(total / len(images) * 1e3, 1)}


if __name__ == "__main__":
    main()
