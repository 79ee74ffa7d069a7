"""FAISS following the database: applying a run's changes against building the index again.

    uv run python benchmarks/bench_faiss_growth.py [--faces 200000 1200000] [--added 0.01] [--removed 0.001]

For each size: a store of synthetic 16-d unit vectors (one face per image) is indexed, then a run
adds `added` x N faces and removes `removed` x N images; the time to bring faces.faiss up to date
(VectorIndex.open: read the file, apply the changes, save) is measured beside a full rebuild from
the database (VectorIndex.open(force_rebuild=True)) of the same state, in the same process.
Sizes from 1M faces use IVF lists (vectors.kinds.APPROXIMATE_FROM).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np

from fecsearch.store.database import FaceRecord, FaceStore
from fecsearch.vectors.faiss_index import VectorIndex
from fecsearch.vectors.kinds import build_faiss


def unit(n: int, rng) -> np.ndarray:
    x = rng.standard_normal((n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add(store: FaceStore, start: int, vectors: np.ndarray, run: int, chunk: int = 50_000) -> None:
    for i in range(0, len(vectors), chunk):
        part = vectors[i:i + chunk]
        images = [{"path": f"/synthetic/{start + i + j}.jpg", "size": 1, "mtime": 0.0, "sha256": "", "width": 1,
                   "height": 1, "status": "ok", "error": None} for j in range(len(part))]
        faces = [[FaceRecord(0, 0, (0, 0, 1, 1), 1.0, None, v)] for v in part]
        store.write_batch(images, faces, "synthetic", run)


def measure(n: int, added: float, removed: float) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        store = FaceStore(folder)
        store.bind_model("synthetic", 16, "l2", "0" * 64)
        run = store.start_run("bench", "/synthetic", "synthetic")
        add(store, 0, unit(n, rng), run)
        start = time.perf_counter()
        first = VectorIndex.open(store, gpu=False)
        build = time.perf_counter() - start
        n_add, n_remove = int(n * added), int(n * removed)
        add(store, n, unit(n_add, rng), run)
        gone = rng.choice(np.arange(1, n + 1), n_remove, replace=False).tolist()
        store.remove_images(gone)
        start = time.perf_counter()
        updated = VectorIndex.open(store, gpu=False)
        update = time.perf_counter() - start
        start = time.perf_counter()
        rebuilt = VectorIndex.open(store, gpu=False, force_rebuild=True, save=False)
        rebuild = time.perf_counter() - start
        queries = unit(200, rng)
        ids, vectors = store.embeddings()
        truth = build_faiss(vectors, ids, "flat").search(queries, 10)[1]

        def recall(index):
            return round(float(np.mean([len(set(t) & {h.face_id for h in index.search(q, 10)}) / 10
                                        for q, t in zip(queries, truth)])), 3)

        return {"faces": n, "kind": first.kind, "added": n_add, "removed": n_remove, "first_build_s": round(build, 2),
                "update_s": round(update, 3), "how": updated.how, "rebuild_s": round(rebuild, 2),
                "rebuild_over_update": round(rebuild / update, 1), "recall_at_10_updated": recall(updated),
                "recall_at_10_rebuilt": recall(rebuilt)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, nargs="+", default=[200_000, 1_200_000])
    parser.add_argument("--added", type=float, default=0.01)
    parser.add_argument("--removed", type=float, default=0.001)
    args = parser.parse_args()
    for n in args.faces:
        print(json.dumps(measure(n, args.added, args.removed)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
