"""Indexing throughput (faces/s) of `fecsearch index` against a naive one-image-at-a-time loop.

    uv run python benchmarks/bench_index.py photos            # ../shared/data/photos, with detection
    uv run python benchmarks/bench_index.py ferplus [--limit N]  # ../shared/data/ferplus/train, --cropped

All loops use the default model in the same process and the same MTCNN (same weights and
thresholds). Each naive loop decodes, detects, aligns and embeds one image and one face at a time
and writes nothing:
  naive_canvas  fecsearch's FacePipeline one image and one face at a time (its detector on the
                letterboxed 1024 canvas, its inference network with folded BatchNorms)
  naive_eager   the same, but each face through the model as written (eager PyTorch, model.embed)
  naive_full    facenet-pytorch's MTCNN.detect on the full-resolution image, as its README does
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
from fecsearch.pipeline import FacePipeline, FoundFace
from fecsearch.search import weights_checksum
from fecsearch.store import FaceStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def naive(paths, model, cropped: bool, eager: bool = False) -> tuple[int, float]:
    from fecsearch.models import prepare_face

    pipeline = FacePipeline(model, cropped=cropped)
    start, faces = time.perf_counter(), 0
    for p in paths:
        for face in pipeline.find_faces([load_image(p)])[0]:
            if eager:
                model.embed(prepare_face(face.crop, model.config.preprocess)[None])
            else:
                pipeline.embed([face])
            faces += 1
    return faces, time.perf_counter() - start


def naive_full(paths, model) -> tuple[int, float]:
    """MTCNN on the image as it is, the way facenet-pytorch is usually called."""
    import numpy as np
    from facenet_pytorch import MTCNN

    from fecsearch.faces import DetectedFace, DetectorConfig, align_detected

    config = DetectorConfig()
    mtcnn = MTCNN(keep_all=True, min_face_size=config.min_face_size, thresholds=list(config.thresholds))
    pipeline = FacePipeline(model, cropped=True)  # only its embed(); alignment done here
    start, faces = time.perf_counter(), 0
    for p in paths:
        image = load_image(p)
        boxes, probs, marks = mtcnn.detect(image, landmarks=True)
        if boxes is None:
            continue
        for box, prob, lm in zip(boxes, probs, marks):
            if prob < config.min_probability:
                continue
            face = DetectedFace(tuple(np.asarray(box, float)), float(prob), np.asarray(lm, float))
            crop = align_detected(image, face, model.config.preprocess.geometry)
            pipeline.embed([FoundFace(face.box, face.probability, face.landmarks, crop)])
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
    faces, seconds = engine(folder, model, cropped)
    result = {"dataset": args.dataset, "images": len(paths), "faces": faces, "engine_s": round(seconds, 1),
              "engine_faces_per_s": round(faces / seconds, 1), "naive_images": len(naive_paths)}
    loops = {"naive_canvas": lambda: naive(naive_paths, model, cropped),
             "naive_eager": lambda: naive(naive_paths, model, cropped, eager=True)}
    if not cropped:
        loops["naive_full"] = lambda: naive_full(naive_paths, model)
    for name, loop in loops.items():
        n, s = loop()
        result[f"{name}_faces"] = n
        result[f"{name}_s"] = round(s, 1)
        result[f"{name}_faces_per_s"] = round(n / s, 1)
        result[f"speedup_vs_{name}"] = round(result["engine_faces_per_s"] / (n / s), 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
