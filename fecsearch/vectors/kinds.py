"""The kinds of FAISS index fecsearch builds, which one a collection of a given size gets, and how
each is made. One entry per kind: a new kind is a branch of build_faiss and, if chosen by size, a
threshold here."""
from __future__ import annotations

import faiss
import numpy as np

# Past this many faces an inverted-file index answers much faster than exhaustive search at
# recall@10 near 0.99 for 16-d embeddings (benchmarks/bench_faiss.py; benchmarks/RESULTS.md).
APPROXIMATE_FROM = 1_000_000
# Past this many, vectors are stored in IVF lists at one byte a dimension (24 bytes a face with its
# id, against 72): recall@10 0.965 against 0.982 at 1M, and faster, where product quantisation
# (16 bytes) falls to 0.85 (benchmarks/bench_faiss.py; benchmarks/RESULTS.md).
COMPRESS_FROM = 20_000_000


# Past this many, the 8-bit lists live in a file that searches map instead of reading, built from
# the database in shards (vectors/ondisk.py): neither the vectors nor the lists need fit in memory
# (100M faces: 2.4 GB of lists, searched in 2.6 GB of memory; benchmarks/bench_faiss_ondisk.py).
ONDISK_FROM = 50_000_000
ONDISK = "ivf-sq8-disk"
# What `fecsearch index --index-type` accepts besides "auto" (by size, as below).
KINDS = ("flat", "hnsw", "ivf", "ivf-sq8", "ivf-pq", ONDISK)
# Inverted lists need faces to train on: fewer than this are searched exactly whatever was asked.
TRAINABLE_FROM = 1000


def choose_index_type(n: int, wanted: str = "auto") -> str:
    """The kind for a collection of n faces: by size, or the one asked for (an index's meta.index_type)."""
    if wanted not in ("auto", None, ""):
        if wanted not in KINDS:
            raise ValueError(f"unknown index type '{wanted}'; known: auto, {', '.join(KINDS)}")
        return "flat" if wanted.startswith("ivf") and n < TRAINABLE_FROM else wanted
    if n >= ONDISK_FROM:
        return ONDISK
    if n >= COMPRESS_FROM:
        return "ivf-sq8"
    return "ivf" if n >= APPROXIMATE_FROM else "flat"


def nprobe_for(kind: str) -> int:
    """Lists searched per query. 64 keeps float lists at recall@10 >= 0.95 even on structureless
    data (tests/test_vector_index.py); the 8-bit lists, used from 20M, need 128: at 20M, 0.920 with
    64 and 0.957 with 128; at 100M, 0.902 and 0.951 (benchmarks/bench_faiss_ondisk.py)."""
    return 128 if kind in ("ivf-sq8", ONDISK) else 64


def ivf_lists(n: int) -> int:
    """About 4 * sqrt(n) lists, FAISS's usual advice, and at least 39 training points per list."""
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


def build_faiss(vectors: np.ndarray, ids: np.ndarray, kind: str, lists: int | None = None) -> faiss.Index:
    """An index of `kind` over `vectors` (trained on them, for IVF). `lists`: the IVF list count,
    by default ivf_lists(len(vectors)); given when `vectors` is a training sample of a larger whole."""
    dim = vectors.shape[1]
    if kind == "flat":
        base = faiss.IndexFlatL2(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, 32)
        base.hnsw.efConstruction = 80
        base.hnsw.efSearch = 256
    elif kind in ("ivf", "ivf-sq8", "ivf-pq"):
        lists = lists or ivf_lists(len(vectors))
        quantizer = faiss.IndexFlatL2(dim)
        if kind == "ivf":  # vectors stored whole: 4 bytes a dimension
            base = faiss.IndexIVFFlat(quantizer, dim, lists)
        elif kind == "ivf-sq8":  # one byte a dimension
            base = faiss.IndexIVFScalarQuantizer(quantizer, dim, lists, faiss.ScalarQuantizer.QT_8bit)
        else:  # product quantisation: 8 sub-vectors of 8 bits, 8 bytes a vector
            base = faiss.IndexIVFPQ(quantizer, dim, lists, 8, 8)
        # k-means needs ~39 points per list; 64 per list is plenty and keeps training short at 10M.
        sample = vectors[np.random.default_rng(0).choice(len(vectors), min(len(vectors), 64 * lists), replace=False)]
        base.train(np.ascontiguousarray(sample, np.float32))
        base.nprobe = nprobe_for(kind)
        # IVF lists hold the face ids themselves. An IndexIDMap around them would map positions, and
        # positions shift when faces are removed from a flat index but not from inverted lists.
        if len(ids):
            base.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids.astype(np.int64))
        return base
    else:
        raise ValueError(f"unknown index type '{kind}'")
    index = faiss.IndexIDMap2(base)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids.astype(np.int64))
    return index
