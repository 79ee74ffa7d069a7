"""Where detection time goes: fecsearch's MTCNN driver against facenet-pytorch's, and threading.

    uv run python benchmarks/bench_detect.py [--repeat 3]

Detection only (no decoding, no embedding) over the 64 photos of ../shared/data/photos, decoded
beforehand, median of --repeat turns. Prints JSON:
  facenet_canvas_*   facenet-pytorch's detect_face on fecsearch's letterboxed canvases
  driver_*           fecsearch.faces.mtcnn.Cascade on the same canvases (FaceDetector.detect)
  ..._t1 / _t2       with torch's intra-op pool at 1 or 2 threads, one photo at a time
  driver_2x1         two Python threads, one photo each, torch at 1 thread (what `index` does)
  pnet_615_*_ms      P-Net alone on a 615x615 level, channels-last against contiguous
With --profile it prints instead where facenet-pytorch's detect_face spends its time (cProfile).
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

from fecsearch.faces.detect import FaceDetector
from fecsearch.faces.images import find_images, load_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from facenet_pytorch.models.utils.detect_face import detect_face

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="Profile facenet-pytorch's detect_face and stop.")
    args = parser.parse_args()
    images = [load_image(p) for p in find_images(DATA / "photos")[0]]
    detector = FaceDetector()
    cascade = detector.cascade
    canvases = [np.asarray(detector._letterbox(im)[0]) for im in images]

    def facenet():
        with torch.inference_mode():
            for c in canvases:
                detect_face(c[None], 20, cascade.pnet, cascade.rnet, cascade.onet, [0.6, 0.7, 0.7], 0.709, "cpu")

    def driver():
        detector.detect(images)

    def driver_threads():
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(detector.detect_one, images))

    if args.profile:
        import cProfile
        import pstats

        facenet()  # warm up
        profile = cProfile.Profile()
        profile.runcall(facenet)
        pstats.Stats(profile).sort_stats("tottime").print_stats(8)
        return

    plans = {"facenet_canvas_t2": (facenet, 2), "facenet_canvas_t1": (facenet, 1),
             "driver_t2": (driver, 2), "driver_t1": (driver, 1), "driver_2x1": (driver_threads, 1)}
    driver()  # warm up
    times: dict[str, list[float]] = {name: [] for name in plans}
    for _ in range(args.repeat):
        for name, (fn, threads) in plans.items():
            torch.set_num_threads(threads)
            times[name].append(timed(fn))
    torch.set_num_threads(2)
    result = {"photos": len(images), "repeat": args.repeat}
    result.update({f"{name}_s": round(statistics.median(t), 2) for name, t in times.items()})

    level = torch.randn(1, 3, 615, 615)
    for name, x in (("channels_last", level.contiguous(memory_format=torch.channels_last)),
                    ("contiguous", level.contiguous())):
        with torch.inference_mode():
            cascade.pnet(x)
            result[f"pnet_615_{name}_ms"] = round(timed(lambda: [cascade.pnet(x) for _ in range(20)]) / 20 * 1000, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
