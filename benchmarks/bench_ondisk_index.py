"""An index folder whose FAISS lists live on disk, end to end through fecsearch's own code: the
database filled with N synthetic faces, `VectorIndex.open` building the lists from it
(vectors/ondisk.build_from_store), searches that map them, then changes kept beside them.

    uv run python benchmarks/bench_ondisk_index.py --n 20000000 --folder /tmp/ondisk-20m

Phases, each in a fresh process so that its peak memory (VmHWM) is its own:
  fill     N clustered 16-d unit vectors (bench_faiss.synthetic) written to faces.db as faces of the
           default model, one image each; the exact top 10 of --queries queries kept as truth
  build    VectorIndex.open with meta.index_type ivf-sq8-disk: two streaming passes over the
           database (training sample, then shards of 5M), lists merged into faces.ivf-<generation>/
  search   the lists opened mapped: ms/query (one thread, one query at a time, k=10) and recall@10;
           baseline in the same process: exact search of 1M vectors held in memory
  change   --add new faces written and --remove images removed through FaceStore, then a fresh
           process opens the index (the changes set beside the lists) and searches as above
           against the new exact truth
  cli      cold `fecsearch query --id` on the folder, three times
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from bench_faiss import synthetic

from fecsearch.models.config import DEFAULT_MODEL, weights_checksum
from fecsearch.store.database import FaceRecord, FaceStore
from fecsearch.vectors.faiss_index import VectorIndex

CHUNK = 1_000_000


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def top10(best: tuple[np.ndarray, np.ndarray], queries: np.ndarray, ids: np.ndarray, x: np.ndarray):
    flat = faiss.IndexFlatL2(x.shape[1])
    flat.add(x)
    d, j = flat.search(queries, 10)
    d_all, i_all = np.concatenate([best[0], d], 1), np.concatenate([best[1], ids[j]], 1)
    order = np.argsort(d_all, 1)[:, :10]
    return np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)


def empty_best(q: int):
    return np.full((q, 10), np.inf, np.float32), np.full((q, 10), -1, np.int64)


def fill(args) -> dict:
    folder = Path(args.folder)
    store = FaceStore(folder)
    store.bind_model(DEFAULT_MODEL, 16, "l2", weights_checksum(DEFAULT_MODEL, None), mirror_average=True)
    store.set_meta("index_type", "ivf-sq8-disk")
    queries = synthetic(args.queries, 16, 1)
    best = empty_best(args.queries)
    started = time.perf_counter()
    db = store.db
    for start in range(0, args.n, CHUNK):
        x = synthetic(min(CHUNK, args.n - start), 16, 1000 + start // CHUNK)
        with db.conn:
            db.execute("BEGIN IMMEDIATE")
            generation = store._bump()
            first = start + 1
            db.conn.executemany("insert into images (id, path, size, mtime, sha256, status, faces) "
                                "values (?, ?, 1, 0, '', 'ok', 1)",
                                ((first + i, f"/synthetic/{first + i}.png") for i in range(len(x))))
            db.conn.executemany("insert into faces (id, image_id, face_index, x1, y1, x2, y2, probability, "
                                "embedding, model, generation) values (?, ?, 0, 0, 0, 48, 48, 1, ?, ?, ?)",
                                ((first + i, first + i, x[i].tobytes(), DEFAULT_MODEL, generation)
                                 for i in range(len(x))))
        best = top10(best, queries, np.arange(first, first + len(x)), x)
        print(json.dumps({"filled": start + len(x), "elapsed_s": round(time.perf_counter() - started, 1)}), flush=True)
    np.save(folder / "bench-queries.npy", queries)
    np.save(folder / "bench-truth.npy", best[1])
    size = (folder / "faces.db").stat().st_size
    store.close()
    return {"phase": "fill", "n": args.n, "fill_s": round(time.perf_counter() - started, 1), "database_bytes": size,
            "database_bytes_per_face": round(size / args.n, 1)}


def build(args) -> dict:
    store = FaceStore(args.folder)
    started = time.perf_counter()
    index = VectorIndex.open(store, gpu=False)
    seconds = time.perf_counter() - started
    return {"phase": "build", "kind": index.kind, "how": index.how, "faces": len(index), "build_s": round(seconds, 1),
            "lists": faiss.extract_index_ivf(index.index.main).nlist, "bytes_on_disk": index.size_on_disk(),
            "bytes_per_face": round(index.size_on_disk() / len(index), 1), "peak_mb": round(vm_hwm_mb())}


def search(args, phase: str = "search") -> dict:
    folder = Path(args.folder)
    faiss.omp_set_num_threads(1)
    queries, truth = np.load(folder / "bench-queries.npy"), np.load(folder / "bench-truth.npy")
    store = FaceStore(folder, readonly=True)
    started = time.perf_counter()
    index = VectorIndex.open(store, gpu=False, save=False)
    open_s = time.perf_counter() - started
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append([h.face_id for h in index.search(q, 10)])
        times.append((time.perf_counter() - t) * 1000)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    peak = vm_hwm_mb()
    changes, faces = index.index.changes, len(index)
    lists_alone = []  # the same queries with nothing beside the lists: what the changes cost
    index.index.set_changes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 16), np.float32))
    for q in queries:
        t = time.perf_counter()
        index.index.search(q[None], 10, np.zeros(0, np.int64))
        lists_alone.append((time.perf_counter() - t) * 1000)
    baseline = faiss.IndexFlatL2(16)
    baseline.add(synthetic(1_000_000, 16, 7))
    base_times = []
    for q in queries:
        t = time.perf_counter()
        baseline.search(q[None], 10)
        base_times.append((time.perf_counter() - t) * 1000)
    return {"phase": phase, "how": index.how, "faces": faces, "changes_beside": changes,
            "open_s": round(open_s, 2), "ms_per_query_p50": round(float(np.median(times)), 3),
            "lists_alone_ms_p50": round(float(np.median(lists_alone)), 3),
            "ms_per_query_p95": round(float(np.percentile(times, 95)), 3), "recall_at_10": round(float(recall), 3),
            "baseline_flat_1m_ms_p50": round(float(np.median(base_times)), 3),
            "ratio_to_baseline": round(float(np.median(times) / np.median(base_times)), 3), "peak_mb": round(peak)}


def change(args) -> dict:
    """--add faces through FaceStore.write_batch and --remove images through remove_images, then the
    new exact truth (streamed from the database)."""
    folder = Path(args.folder)
    store = FaceStore(folder)
    started = time.perf_counter()
    x = synthetic(args.add, 16, 99)
    for start in range(0, len(x), 10_000):
        part = x[start:start + 10_000]
        images = [{"path": f"/synthetic/new-{start + i}.png", "size": 1, "mtime": 0.0, "sha256": "", "width": 48,
                   "height": 48, "status": "ok", "error": None} for i in range(len(part))]
        store.write_batch(images, [[FaceRecord(0, 0, (0, 0, 48, 48), 1.0, None, v)] for v in part], DEFAULT_MODEL,
                          store.start_run("bench", "/synthetic", DEFAULT_MODEL))
    gone = np.random.default_rng(5).choice(np.arange(1, args.n + 1), args.remove, replace=False)
    store.remove_images([int(i) for i in gone])
    write_s = time.perf_counter() - started
    queries = np.load(folder / "bench-queries.npy")
    best = empty_best(len(queries))
    with store.read_transaction():
        for ids, vectors in store.embedding_chunks(CHUNK):
            best = top10(best, queries, ids, vectors)
    np.save(folder / "bench-truth.npy", best[1])
    store.close()
    return {"phase": "change", "added": args.add, "removed": args.remove, "write_s": round(write_s, 1)}


def cli(args) -> dict:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fecsearch", "query", "--id", "12345", "--index", args.folder, "-k",
                        "10", "--json"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return {"phase": "cli", "cold_query_by_id_s": [round(t, 2) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000_000)
    parser.add_argument("--folder", default="/tmp/ondisk-index")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--add", type=int, default=100_000)
    parser.add_argument("--remove", type=int, default=50_000)
    parser.add_argument("--phase", choices=["all", "fill", "build", "search", "change", "search-after-change", "cli"],
                        default="all")
    args = parser.parse_args()
    if args.phase != "all":
        phases = {"fill": fill, "build": build, "search": search, "change": change, "cli": cli,
                  "search-after-change": lambda a: search(a, "search-after-change")}
        print(json.dumps(phases[args.phase](args)), flush=True)
        return
    if Path(args.folder).exists() and any(Path(args.folder).iterdir()):
        sys.exit(f"{args.folder} is not empty; give a new --folder")
    results = []
    for phase in ("fill", "build", "search", "change", "search-after-change", "cli"):
        out = subprocess.run([sys.executable, __file__, "--phase", phase, "--n", str(args.n), "--folder", args.folder,
                              "--queries", str(args.queries), "--add", str(args.add), "--remove", str(args.remove)],
                             check=True, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
