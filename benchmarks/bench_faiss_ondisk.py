"""IVF lists on disk, built in shards and memory-mapped: build time, size, memory, recall@10 and
ms/query at 10M to 100M synthetic 16-d unit vectors (as bench_faiss.py makes them).

    uv run python benchmarks/bench_faiss_ondisk.py --n 100000000 --shard 10000000 --folder /tmp/ivf100m

Each shard's vectors are generated from its own seed, added to a copy of the trained index and
written alone (vectors.ondisk.write_shard), so the build never holds more than one shard. Ground
truth: exact search of every shard for --queries queries, merged. Search runs in a fresh process
(`--search-only`) that maps the merged lists, on one thread, one query at a time, and reports its
peak resident memory (VmHWM: ru_maxrss would include the builder's peak, which Linux carries
across exec). Baseline in the same run: the same queries against one shard's
vectors in a flat index held in memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from bench_faiss import synthetic

from fecsearch.vectors.ondisk import merge_shards, open_mapped, trained_ivf, write_shard


def shard_vectors(i: int, size: int) -> np.ndarray:
    return synthetic(size, 16, 1000 + i)


def build(args) -> dict:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards = args.n // args.shard
    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    sample = shard_vectors(0, args.shard)[: 64 * args.lists]
    trained = trained_ivf(sample, args.kind, args.lists)
    train_s = time.perf_counter() - started
    queries = synthetic(args.queries, 16, 1)
    best_d = np.full((args.queries, 10), np.inf, np.float32)
    best_i = np.full((args.queries, 10), -1, np.int64)
    paths = []
    for i in range(shards):
        x = shard_vectors(i, args.shard)
        ids = np.arange(i * args.shard, (i + 1) * args.shard, dtype=np.int64)
        path = folder / f"shard-{i:03d}.faiss"
        if not path.exists():
            write_shard(trained, x, ids, path)
        paths.append(path)
        flat = faiss.IndexFlatL2(16)
        flat.add(x)
        d, j = flat.search(queries, 10)
        d_all, i_all = np.concatenate([best_d, d], 1), np.concatenate([best_i, j + i * args.shard], 1)
        order = np.argsort(d_all, 1)[:, :10]
        best_d, best_i = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
        print(json.dumps({"shard": i, "elapsed_s": round(time.perf_counter() - started, 1)}), flush=True)
        del x, flat
    merged = merge_shards(trained, paths, folder)
    build_s = time.perf_counter() - started
    np.save(folder / "queries.npy", queries)
    np.save(folder / "truth.npy", best_i)
    for p in paths:
        p.unlink()
    size = sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".faiss", ".ivfdata"))
    return {"n": args.n, "kind": args.kind, "lists": args.lists, "shards": shards, "train_s": round(train_s, 1),
            "build_s": round(build_s, 1), "bytes_on_disk": size, "bytes_per_vector": round(size / args.n, 1),
            "index": str(merged)}


def search(args) -> dict:
    folder = Path(args.folder)
    faiss.omp_set_num_threads(1)
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    index = open_mapped(folder / "index.faiss")
    out = {}
    for nprobe in args.nprobe:
        faiss.extract_index_ivf(index).nprobe = nprobe
        start = time.perf_counter()
        found = np.concatenate([index.search(q[None], 10)[1] for q in queries])
        ms = (time.perf_counter() - start) / len(queries) * 1e3
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
        out[nprobe] = {"ms_per_query": round(ms, 2), "recall@10": round(recall, 3)}
    baseline = faiss.IndexFlatL2(16)
    baseline.add(shard_vectors(0, min(args.shard, 1_000_000)))
    start = time.perf_counter()
    for q in queries:
        baseline.search(q[None], 10)
    flat_1m_ms = (time.perf_counter() - start) / len(queries) * 1e3
    return {"by_nprobe": out, "flat_1M_in_memory_ms_per_query": round(flat_1m_ms, 2),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--shard", type=int, default=10_000_000)
    parser.add_argument("--lists", type=int, default=16384)
    parser.add_argument("--kind", default="ivf-sq8")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--folder", default="/tmp/fecsearch-ivf-ondisk")
    parser.add_argument("--search-only", action="store_true")
    args = parser.parse_args()
    if args.search_only:
        print(json.dumps(search(args)))
        return
    report = build(args)
    print(json.dumps(report), flush=True)
    done = subprocess.run([sys.executable, __file__, "--search-only", "--folder", args.folder, "--nprobe",
                           *map(str, args.nprobe), "--shard", str(args.shard)], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent)
    print(json.dumps({**report, **json.loads(done.stdout.strip().splitlines()[-1])}, indent=2))


if __name__ == "__main__":
    main()
