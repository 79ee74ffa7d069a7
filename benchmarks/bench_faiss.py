"""FAISS search time and recall@10 on synthetic 16-d unit vectors, per index type and size.

    uv run python benchmarks/bench_faiss.py [--sizes 200000 1000000 10000000] [--queries 1000]

Ground truth is exact search (flat); each row reports the per-query search time in a batch of
--queries queries run one at a time (as `fecsearch query` does), and the ratio to flat. Searches
run on one thread: a single query gains nothing from more, and OpenMP's waiting threads cost a
lot on a busy 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import time

import faiss
import numpy as np

from fecsearch.vectors.kinds import build_faiss


def synthetic(n: int, dim: int, seed: int) -> np.ndarray:
    # Clustered, like embeddings of expressions: 512 centres, unit-norm points around them.
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((512, dim)).astype(np.float32)
    x = centres[rng.integers(0, 512, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def size_of(index) -> int:
    """The index's size as FAISS writes it to disk (what a search process holds in memory or maps)."""
    return len(faiss.serialize_index(index))


def timed_search(index, queries, k=10):
    start = time.perf_counter()
    ids = np.concatenate([index.search(q[None], k)[1] for q in queries])
    return (time.perf_counter() - start) / len(queries), ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--hnsw-max", type=int, default=2_000_000, help="Skip HNSW builds above this size.")
    parser.add_argument("--types", nargs="+", default=["hnsw", "ivf"],
                        help="Any of hnsw, ivf, ivf-sq8, ivf-pq (vectors.faiss_index.build_faiss).")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        data = synthetic(n, 16, 0)
        queries = synthetic(args.queries, 16, 1)
        ids = np.arange(n, dtype=np.int64)
        flat = build_faiss(data, ids, "flat")
        faiss.omp_set_num_threads(1)
        flat_time, truth = timed_search(flat, queries)
        rows.append({"n": n, "type": "flat", "build_s": 0.0, "ms_per_query": flat_time * 1e3, "recall@10": 1.0,
                     "speed_vs_flat": 1.0, "bytes_per_vector": size_of(flat) / n})
        print(json.dumps(rows[-1]), flush=True)
        for kind in args.types:
            if kind == "hnsw" and n > args.hnsw_max:
                continue
            faiss.omp_set_num_threads(2)  # building uses both cores
            start = time.perf_counter()
            index = build_faiss(data, ids, kind)
            build = time.perf_counter() - start
            faiss.omp_set_num_threads(1)
            t, found = timed_search(index, queries)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
            rows.append({"n": n, "type": kind, "build_s": build, "ms_per_query": t * 1e3, "recall@10": recall,
                         "speed_vs_flat": flat_time / t, "bytes_per_vector": size_of(index) / n})
            print(json.dumps(rows[-1]), flush=True)
            del index
        del flat
    print("| vectors | index | build s | ms/query | recall@10 | speed vs flat | bytes/vector |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['type']} | {r['build_s']:.1f} | {r['ms_per_query']:.3f} | {r['recall@10']:.3f} "
              f"| {r['speed_vs_flat']:.1f}x | {r['bytes_per_vector']:.0f} |")


if __name__ == "__main__":
    main()
