"""Query latency, p50/p95: cold (a fresh process per command) and warm (model and index loaded).

    uv run python benchmarks/bench_query.py [--cold 5] [--warm 50]

Builds an index of ../shared/data/photos first (or reuses --index). Queries by image use copies of
those photos in a temporary folder, which the index does not hold, so every query detects, aligns
and embeds its face; `warm_by_indexed_file` queries with the indexed files themselves, whose faces
the index answers without detecting them again. The cold commands are timed in turns, each beside
`python -c "import torch"` as the baseline (the machine is noisy: the ratio is what compares across
runs). Queries by image run on the default index (int8 vectors, ONNX Runtime) and on a second index
of the same photos built with --precision fp32, in ONNX Runtime and in torch (--runtime torch,
which cannot make int8 vectors), cold and warm.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from photos_index import PHOTOS, photos_index

from fecsearch.query.search import Searcher

DATA = PHOTOS


def pct(values) -> dict:
    return {"p50_ms": round(float(np.percentile(values, 50)) * 1e3, 1),
            "p95_ms": round(float(np.percentile(values, 95)) * 1e3, 1), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, default=None)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--warm", type=int, default=50)
    args = parser.parse_args()
    index = photos_index(args.index)  # the default: int8 vectors
    float_index = photos_index(None, "--precision", "fp32")  # what torch can query
    indexed = sorted(DATA.glob("*.jpg"))
    copies = Path(tempfile.mkdtemp())
    photos = [Path(shutil.copy(p, copies / p.name)) for p in indexed]  # new files to the index
    fecsearch = [sys.executable, "-m", "fecsearch"]
    commands = {
        "import_torch_baseline": [sys.executable, "-c", "import torch"],
        "help": fecsearch + ["--help"],
        "query_by_id": fecsearch + ["query", "--id", "1", "--index", str(index), "--json"],
        # one of the photos, in turn: ONNX Runtime on the default index (int8), on a float index,
        # and torch on the float index
        "query_by_image": (index, []),
        "query_by_image_fp32": (float_index, []),
        "query_by_image_torch": (float_index, ["--runtime", "torch"]),
    }
    cold = {name: [] for name in commands}
    for i in range(args.cold):
        for name, command in commands.items():
            if isinstance(command, tuple):
                command = fecsearch + ["query", str(photos[i % len(photos)]), "--index", str(command[0]), "--json",
                                       *command[1]]
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            cold[name].append(time.perf_counter() - start)
    base = np.median(cold["import_torch_baseline"])
    cold_report = {name: {**pct(v), "x_import_torch": round(float(np.median(v) / base), 2)} for name, v in cold.items()}
    report = {"cold_process": cold_report}
    for name, runtime, searched in (("onnx_int8", "onnx", index), ("onnx_fp32", "onnx", float_index),
                                    ("torch", "torch", float_index)):
        searcher = Searcher(searched, runtime=runtime)
        searcher.query_image(photos[0])  # loads the model: the cold numbers above count that
        warm_image, warm_id = [], []
        for i in range(args.warm):
            p = photos[i % len(photos)]
            start = time.perf_counter()
            q = searcher.query_image(p)
            searcher.search(q.vector, 10)
            warm_image.append(time.perf_counter() - start)
            start = time.perf_counter()
            q = searcher.query_face_id(1 + i % 60)
            searcher.search(q.vector, 10)
            warm_id.append(time.perf_counter() - start)
        report[f"warm_by_image_{name}"] = pct(warm_image)
        report[f"warm_by_face_id_{name}"] = pct(warm_id)
    searcher = Searcher(index)
    searcher.query_image(photos[0])
    warm_indexed = []
    for i in range(args.warm):
        start = time.perf_counter()
        q = searcher.query_image(indexed[i % len(indexed)])
        searcher.search(q.vector, 10)
        warm_indexed.append(time.perf_counter() - start)
    report["warm_by_indexed_file"] = pct(warm_indexed)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
