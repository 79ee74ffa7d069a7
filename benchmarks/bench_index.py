"""Indexing throughput (faces/s) of `fecsearch index` against a naive one-image-at-a-time loop.

    uv run python benchmarks/bench_index.py photos            # ../shared/data/photos, with detection
    uv run python benchmarks/bench_index.py ferplus [--limit N]  # ../shared/data/ferplus/train, --cropped

All loops use the default model in the same process and the same MTCNN (same weights and
thresholds). `engine_onnx` is `fecsearch index` as it runs by default (ONNX Runtime), `engine_torch`
the same with --runtime torch; the naive loops run torch. Each naive loop decodes, detects, aligns and embeds one image and one face at a time
in one thread and writes nothing:
  naive_canvas  fecsearch's FacePipeline one image and one face at a time (its MTCNN driver on the
                letterboxed 1024 canvas, its inference network with folded BatchNorms)
  naive_eager   the same, but each face through the model as written (eager PyTorch, model.embed)
  naive_facenet_canvas  facenet-pytorch's MTCNN.detect on the same letterboxed canvas
  naive_full    facenet-pytorch's MTCNN.detect on the full-resolution image, as its README does
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from fecsearch.faces.align import FoundFace
from fecsearch.faces.images import find_images, load_image
from fecsearch.ingest.indexer import Indexer
from fecsearch.models import DEFAULT_MODEL, create_model
from fecsearch.models.config import weights_checksum
from fecsearch.models.inference import load_inference
from fecsearch.models.pipeline import FacePipeline
from fecsearch.store.database import FaceStore

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def naive(paths, model, cropped: bool, eager: bool = False) -> tuple[int, float]:
    from fecsearch.models import prepare_face

    pipeline = FacePipeline(model.for_inference(), cropped=cropped, runtime="torch")
    start, faces = time.perf_counter(), 0
    for p in paths:
        for face in pipeline.find_faces([load_image(p)])[0]:
            if eager:
                model.embed(prepare_face(face.crop, model.config.preprocess)[None])
            else:
                pipeline.embed([face])
            faces += 1
    return faces, time.perf_counter() - start


def naive_facenet(paths, model, canvas: bool) -> tuple[int, float]:
    """facenet-pytorch's MTCNN.detect, the way it is usually called: on the image as it is, or
    (canvas=True) on the letterboxed canvas fecsearch's detector uses, boxes mapped back."""
    import numpy as np
    from facenet_pytorch import MTCNN

    from fecsearch.faces.align import align_detected
    from fecsearch.faces.detect import DetectedFace, DetectorConfig, FaceDetector

    config = DetectorConfig()
    mtcnn = MTCNN(keep_all=True, min_face_size=config.min_face_size, thresholds=list(config.thresholds))
    letterbox = FaceDetector(config)._letterbox
    pipeline = FacePipeline(model.for_inference(), cropped=True, runtime="torch")  # only its embed(); alignment here
    start, faces = time.perf_counter(), 0
    for p in paths:
        image = load_image(p)
        board, placed = letterbox(image) if canvas else (image, None)
        scale, ox, oy = (placed.scale, placed.x, placed.y) if placed else (1.0, 0, 0)
        boxes, probs, marks = mtcnn.detect(board, landmarks=True)
        if boxes is None:
            continue
        for box, prob, lm in zip(boxes, probs, marks):
            box = (np.asarray(box, float) - [ox, oy, ox, oy]) / scale
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if prob < config.min_probability or not (0 <= cx < image.width and 0 <= cy < image.height):
                continue
            face = DetectedFace(tuple(box), float(prob), (np.asarray(lm, float) - [ox, oy]) / scale)
            crop = align_detected(image, face, model.config.preprocess.geometry)
            pipeline.embed([FoundFace(face.box, face.probability, face.landmarks, crop)])
            faces += 1
    return faces, time.perf_counter() - start


def engine(folder: Path, mirror: bool, cropped: bool, runtime: str) -> tuple[int, float]:
    tmp = Path(tempfile.mkdtemp())
    try:
        store = FaceStore(tmp / "idx")
        network = load_inference(DEFAULT_MODEL, runtime=runtime, mirror_average=mirror, device="cpu")
        indexer = Indexer(store, network, DEFAULT_MODEL, weights_checksum(DEFAULT_MODEL, None), cropped=cropped,
                          progress=False, report=lambda m: None)
        summary = indexer.run(folder)
        return summary.faces_added, summary.seconds
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=["photos", "ferplus"])
    parser.add_argument("--limit", type=int, default=None, help="Naive loop on the first N files only (it is slow).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Run every loop N times, in turn, and report each one's median time.")
    parser.add_argument("--no-mirror", action="store_true", help="Embed faces without the mirror average.")
    args = parser.parse_args()
    cropped = args.dataset == "ferplus"
    folder = DATA / ("ferplus/train" if cropped else "photos")
    model = create_model(DEFAULT_MODEL)
    model.config = replace(model.config, mirror_average=not args.no_mirror)
    paths, _ = find_images(folder)
    naive_paths = paths[: args.limit] if args.limit else paths
    loops = {"engine_onnx": lambda: engine(folder, not args.no_mirror, cropped, "onnx"),
             "engine_torch": lambda: engine(folder, not args.no_mirror, cropped, "torch"),
             "naive_canvas": lambda: naive(naive_paths, model, cropped),
             "naive_eager": lambda: naive(naive_paths, model, cropped, eager=True)}
    if not cropped:
        loops["naive_facenet_canvas"] = lambda: naive_facenet(naive_paths, model, canvas=True)
        loops["naive_full"] = lambda: naive_facenet(naive_paths, model, canvas=False)
    # Turns (engine, naive..., engine, naive...) rather than one loop's runs back to back, so that
    # a slow minute of a shared machine falls on every loop alike.
    runs: dict[str, list[tuple[int, float]]] = {name: [] for name in loops}
    for _ in range(args.repeat):
        for name, loop in loops.items():
            runs[name].append(loop())
    result = {"dataset": args.dataset, "images": len(paths), "naive_images": len(naive_paths), "repeat": args.repeat,
              "mirror_average": not args.no_mirror}
    for name, done in runs.items():
        n, s = done[0][0], statistics.median(t for _, t in done)
        result[f"{name}_faces"] = n
        result[f"{name}_s"] = round(s, 2)
        result[f"{name}_faces_per_s"] = round(n / s, 1)
    for name in list(loops)[1:]:
        result[f"speedup_vs_{name}"] = round(result["engine_onnx_faces_per_s"] / result[f"{name}_faces_per_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
