"""Where detection time goes: fecsearch's MTCNN driver against facenet-pytorch's, runtimes, threads.

    uv run python benchmarks/bench_detect.py [--repeat 3]

Detection only (no decoding, no embedding) over the 64 photos of ../shared/data/photos, decoded
beforehand, median of --repeat turns, every plan once per turn, in turn. Prints JSON (seconds for
the 64 photos):
  facenet_canvas       facenet-pytorch's detect_face on fecsearch's letterboxed canvases (torch,
                       2 threads): the baseline
  driver_onnx          fecsearch.faces.detect.FaceDetector, the default (ONNX Runtime, every core)
  driver_onnx_nms_box_by_box   the same with NMS comparing boxes one kept box at a time (as before
                       it compared every pair at once; faces.mtcnn.NMS_MATRIX_LIMIT = 0)
  driver_onnx_2x1      two Python threads, one photo each, one ONNX Runtime thread (what `index` does)
  driver_torch         FaceDetector(runtime="torch"), 2 threads
With --profile it prints instead where the default driver spends its time (cProfile).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fecsearch.faces import mtcnn
from fecsearch.faces.detect import FaceDetector
from fecsearch.faces.images import find_images, load_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from facenet_pytorch import MTCNN
    from facenet_pytorch.models.utils.detect_face import detect_face

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="Profile the default driver and stop.")
    args = parser.parse_args()
    images = [load_image(p) for p in find_images(DATA / "photos")[0]]
    default, one_thread, in_torch = FaceDetector(), FaceDetector(threads=1), FaceDetector(runtime="torch")
    canvases = [np.asarray(default._letterbox(im)[0]) for im in images]
    theirs = MTCNN(device="cpu")

    def facenet():
        with torch.inference_mode():
            for c in canvases:
                detect_face(c[None], 20, theirs.pnet, theirs.rnet, theirs.onet, [0.6, 0.7, 0.7], 0.709, "cpu")

    def box_by_box():
        limit, mtcnn.NMS_MATRIX_LIMIT = mtcnn.NMS_MATRIX_LIMIT, 0
        try:
            default.detect(images)
        finally:
            mtcnn.NMS_MATRIX_LIMIT = limit

    def two_photos_at_once():
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(one_thread.detect_one, images))

    if args.profile:
        import cProfile
        import pstats

        default.detect(images)  # warm up
        profile = cProfile.Profile()
        profile.runcall(default.detect, images)
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
        return

    torch.set_num_threads(2)
    plans = {"facenet_canvas": facenet, "driver_onnx": lambda: default.detect(images),
             "driver_onnx_nms_box_by_box": box_by_box, "driver_onnx_2x1": two_photos_at_once,
             "driver_torch": lambda: in_torch.detect(images)}
    for fn in plans.values():
        fn()  # warm up
    times: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(args.repeat):
        for name, fn in plans.items():
            times[name].append(timed(fn))
    result = {"photos": len(images), "repeat": args.repeat}
    result.update({f"{name}_s": round(statistics.median(t), 2) for name, t in times.items()})
    base = statistics.median(times["facenet_canvas"])
    result.update({f"{name}_x_facenet": round(base / statistics.median(t), 2) for name, t in times.items()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
