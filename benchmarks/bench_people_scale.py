"""How `fecsearch people`'s clustering scales: time and memory on synthetic identity descriptors.

    uv run python benchmarks/bench_people_scale.py [--faces 10000 50000 100000]

Each person is a random unit direction in 1024-d; their faces are that direction plus Gaussian
noise (cosine with it about 0.93, which stage 1 groups), renormalised; 10 faces a person on
average. Measured: the exact k-NN search that gives the graph (FAISS, inner product, as
IdentityIndex.neighbours does), the two stages (people.cluster.cluster_descriptors), the people
found against the true number, the adjusted Rand index, and the process's peak memory. This is
about cost: the data is easy, and says nothing of accuracy on real faces (CK+48 and the photos
measure that: benchmarks/people_thresholds.py).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import faiss
import numpy as np
from sklearn.metrics import adjusted_rand_score

from fecsearch.people.cluster import NEIGHBOURS, chinese_whispers, cluster_descriptors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    report = []
    for n in args.faces:
        people = n // 10
        centres = rng.normal(size=(people, 1024)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        who = rng.integers(0, people, n)
        faces = centres[who] + rng.normal(size=(n, 1024)).astype(np.float32) * 0.012
        faces /= np.linalg.norm(faces, axis=1, keepdims=True)
        start = time.perf_counter()
        index = faiss.IndexFlatIP(1024)
        index.add(faces)
        sims, found = index.search(faces, NEIGHBOURS)
        knn = time.perf_counter() - start
        start = time.perf_counter()
        groups = chinese_whispers(sims, found, threshold=0.8).max() + 1
        labels = cluster_descriptors(faces, (sims, found))
        clustering = time.perf_counter() - start
        report.append({"faces": n, "true_people": int(len(set(who.tolist()))), "knn_s": round(knn, 1),
                       "stage1_groups": int(groups), "clustering_s": round(clustering, 1),
                       "people_found": int(len(set(labels.tolist()))),
                       "adjusted_rand_index": round(float(adjusted_rand_score(who, labels)), 4),
                       "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})
        print(json.dumps(report[-1]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
