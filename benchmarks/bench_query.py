"""Query latency, p50/p95: cold (a fresh `fecsearch query` process) and warm (model and index loaded).

    uv run python benchmarks/bench_query.py [--cold 5] [--warm 50]

Builds an index of ../shared/data/photos first (or reuses --index), queries with its photos.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
    index = photos_index(args.index)
    photos = sorted(DATA.glob("*.jpg"))
    cold = []
    for p in photos[: args.cold]:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fecsearch", "query", str(p), "--index", str(index), "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        cold.append(time.perf_counter() - start)
    searcher = Searcher(index)
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
    print(json.dumps({"cold_process": pct(cold), "warm_by_image": pct(warm_image), "warm_by_face_id": pct(warm_id)},
                     indent=2))


if __name__ == "__main__":
    main()
