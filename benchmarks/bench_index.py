"""Indexing throughput (faces/s) of `fecsearch index` against a naive one-image-at-a-time loop.

    uv run python benchmarks/bench_index.py photos            # ../shared/data/photos, with detection
    uv run python benchmarks/bench_index.py ferplus [--limit N]  # ../shared/data/ferplus/train, --cropped

Both use the same detector and the default model in the same process; the naive loop decodes,
detects, aligns and embeds one image and one face at a time and writes nothing.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from fecsearch.images import find_images, load_image
from fecsearch.indexer import Indexer
from fecsearch.models import DEFAULT_MODEL, create_model
from fecsearch.pipeline import FacePipeline
from fecsearch.search import weights_checksum
from fecsearch.store import FaceStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def naive(paths, model, cropped: bool) -> tuple[int, float]:
    pipeline = FacePipeline(model, cropped=cropped)
    start, faces = time.perf_counter(), 0
    for p in paths:
        for face in pipeline.find_faces([load_image(p)])[0]:
            pipeline.embed([face])
            faces += 1
    return faces, time.perf_counter() - start


def engine(folder: Path, model, cropped: bool) -> tuple[int, float]:
    tmp = Path(tempfile.mkdtemp())
    try:
        store = FaceStore(tmp / "idx")
        indexer = Indexer(store, model, DEFAULT_MODEL, weights_checksum(DEFAULT_MODEL, None), cropped=cropped,
                          progress=False, report=lambda m: None)
        summary = indexer.run(folder)
        return summary.faces_added, summary.seconds
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=["photos", "ferplus"])
    parser.add_argument("--limit", type=int, default=None, help="Naive loop on the first N files only (it is slow).")
    args = parser.parse_args()
    cropped = args.dataset == "ferplus"
    folder = DATA / ("ferplus/train" if cropped else "photos")
    model = create_model(DEFAULT_MODEL)
    paths, _ = find_images(folder)
    naive_paths = paths[: args.limit] if args.limit else paths
    naive_faces, naive_s = naive(naive_paths, model, cropped)
    faces, seconds = engine(folder, model, cropped)
    result = {"dataset": args.dataset, "images": len(paths), "faces": faces, "engine_s": round(seconds, 1),
              "engine_faces_per_s": round(faces / seconds, 1), "naive_images": len(naive_paths),
              "naive_s": round(naive_s, 1), "naive_faces_per_s": round(naive_faces / naive_s, 1)}
    result["speedup"] = round(result["engine_faces_per_s"] / result["naive_faces_per_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
