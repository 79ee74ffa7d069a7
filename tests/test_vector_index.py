"""FAISS index types: each finds the true neighbours, and the store's index switches type by size."""
import numpy as np
import pytest

import fecsearch.vectors.faiss_index as vi
from fecsearch.store.database import FaceRecord, FaceStore


def unit(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_types_find_true_neighbours(kind):
    data, queries = unit(20000, 0), unit(50, 1)
    ids = np.arange(1000, 21000)
    truth = vi.build_faiss(data, ids, "flat").search(queries, 10)[1]
    found = vi.build_faiss(data, ids, kind).search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= (1.0 if kind == "flat" else 0.9)
    assert found.min() >= 1000  # ids are the faces' ids, not positions


def test_store_switches_to_approximate_index(tmp_path, monkeypatch):
    store = FaceStore(tmp_path / "idx")
    store.bind_model("test", 16, "l2", "0" * 64)
    vectors = unit(3000, 2)
    images = [{"path": f"/x/{i}.jpg", "size": 1, "mtime": 0.0, "sha256": "", "width": 1, "height": 1,
               "status": "ok", "error": None} for i in range(len(vectors))]
    faces = [[FaceRecord(0, 0, (0, 0, 1, 1), 1.0, None, v)] for v in vectors]
    store.write_batch(images, faces, "test", store.start_run("test", "/x", "test"))
    monkeypatch.setattr(vi, "APPROXIMATE_FROM", 1000)
    index = vi.VectorIndex.open(store)
    assert index.kind == "ivf" and len(index) == 3000
    hits = index.search(vectors[5], 3)
    assert hits[0].face_id == 6 and hits[0].distance < 1e-3  # ids start at 1
    again = vi.VectorIndex.open(store)
    assert not again.rebuilt and again.kind == "ivf"
