"""Distances between embeddings and exact nearest neighbours: one definition for every caller."""
from __future__ import annotations

import numpy as np

DISTANCES = ("l1", "l2", "cosine")


def normalise(vectors: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero): cosine distance becomes L2 distance."""
    vectors = np.ascontiguousarray(vectors, dtype=dtype)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def pairwise(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    """Row-wise distance between matching rows of a and b."""
    if distance == "l1":
        return np.abs(a - b).sum(1)
    if distance == "l2":
        return ((a - b) ** 2).sum(1)
    if distance == "cosine":
        return 1.0 - (normalise(a, np.float64) * normalise(b, np.float64)).sum(1)
    raise ValueError(f"unknown distance '{distance}'; use one of {', '.join(DISTANCES)}")


def nearest(vectors: np.ndarray, queries: np.ndarray, k: int, distance: str) -> np.ndarray:
    """Indices of each query's k nearest vectors, exact: squared L2, or cosine on unit vectors."""
    import faiss

    if distance == "cosine":
        vectors, queries = normalise(vectors), normalise(queries)
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, np.float32))
    return index.search(np.ascontiguousarray(queries, np.float32), k)[1]
