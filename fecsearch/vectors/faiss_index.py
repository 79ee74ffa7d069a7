"""The FAISS index over a FaceStore's embeddings: derived data that follows the database.

faces.faiss.json records the database generation the file reflects. When the database has moved
on, the changes since then (store.changes_since) are applied: removed ids removed, new vectors
added (to the trained lists of an IVF index). The index is built again from the database instead
when the file is missing, unreadable or from another model, when the collection has outgrown its
index type, when an IVF index holds REBUILD_GROWTH times the faces it was trained on, or on
`fecsearch index --rebuild-index`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import faiss
import numpy as np

from fecsearch.store.database import FaceStore
from fecsearch.vectors.metrics import normalise

FAISS_NAME = "faces.faiss"
FAISS_INFO = "faces.faiss.json"
# IVF lists trained on n vectors serve well up to a few times n; past that, train again.
REBUILD_GROWTH = 4


# Past this many faces an inverted-file index answers much faster than exhaustive search at
# recall@10 near 0.99 for 16-d embeddings (benchmarks/bench_faiss.py; benchmarks/RESULTS.md).
APPROXIMATE_FROM = 1_000_000
# Past this many, vectors are stored in IVF lists at one byte a dimension (24 bytes a face with its
# id, against 72): recall@10 0.965 against 0.982 at 1M, and faster, where product quantisation
# (16 bytes) falls to 0.85 (benchmarks/bench_faiss.py; benchmarks/RESULTS.md).
COMPRESS_FROM = 20_000_000


def choose_index_type(n: int) -> str:
    if n >= COMPRESS_FROM:
        return "ivf-sq8"
    return "ivf" if n >= APPROXIMATE_FROM else "flat"


def nprobe_for(kind: str) -> int:
    """Lists searched per query. 64 keeps float lists at recall@10 >= 0.95 even on structureless
    data (tests/test_vector_index.py); the 8-bit lists, used from 20M, need 128: at 20M, 0.920 with
    64 and 0.957 with 128; at 100M, 0.902 and 0.951 (benchmarks/bench_faiss_ondisk.py)."""
    return 128 if kind == "ivf-sq8" else 64


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


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """faiss-gpu builds expose GPUs; on faiss-cpu this is the identity."""
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        try:
            resources = faiss.StandardGpuResources()
            return faiss.index_cpu_to_gpu(resources, 0, index)
        except Exception:  # HNSW has no GPU version: keep it on the CPU
            return index
    return index


def store_identity(store: FaceStore) -> dict:
    """What the vectors are: the model, its dimension and its weights' checksum, as the database records them."""
    return {key: store.meta(key) for key in ("model", "dim", "weights_sha256")}


@dataclass
class SearchHit:
    face_id: int
    distance: float


class VectorIndex:
    """Searches a FaceStore's faces: faces.faiss as it is when it matches the database, brought up to
    date when the database has changed since, or built again."""

    def __init__(self, store: FaceStore, how: str, kind: str, index: faiss.Index, generation: int,
                 trained_on: int):
        self.store, self.how, self.kind, self.index = store, how, kind, index
        self.generation = generation  # of the database the vectors reflect
        self.trained_on = trained_on  # faces at the last build (IVF lists were trained on them)
        self.distance = store.meta("distance", "l2")

    @property
    def rebuilt(self) -> bool:
        return self.how == "rebuilt"

    @classmethod
    def open(cls, store: FaceStore, force_rebuild: bool = False, gpu: bool = True, save: bool = True) -> "VectorIndex":
        """save=False keeps what it builds or updates in memory: for readers (a server) that must not
        race the indexer's writes."""
        path, info_path = store.dir / FAISS_NAME, store.dir / FAISS_INFO
        loaded = None
        if not force_rebuild and path.exists() and info_path.exists():
            try:
                info = json.loads(info_path.read_text())
                # The vectors must be this model's, not merely as many as the database holds.
                if info.get("model") == store_identity(store) and "trained_on" in info:
                    index = faiss.read_index(str(path))
                    if index.d == int(store.meta("dim", "0") or 0):
                        loaded = cls(store, "loaded", info["kind"], index, info["generation"], info["trained_on"])
            except Exception:  # unreadable or truncated: the database has everything to rebuild it
                loaded = None
        if loaded is not None and loaded.catch_up():
            if loaded.how == "updated" and save:
                loaded.save()
            if gpu:
                loaded.index = to_gpu_if_available(loaded.index)
            return loaded
        generation, ids, vectors = store.snapshot()
        if store.meta("distance") == "cosine" and len(vectors):
            vectors = normalise(vectors)
        kind = choose_index_type(len(ids))
        dim = vectors.shape[1] if len(ids) else int(store.meta("dim", "16") or 16)
        built = cls(store, "rebuilt", kind, build_faiss(vectors.reshape(len(ids), dim), ids, kind), generation,
                    len(ids))
        if save:
            built.save()
        if gpu:
            built.index = to_gpu_if_available(built.index)
        return built

    def catch_up(self) -> bool:
        """Apply the database's changes since self.generation; False when the index must be built
        again instead (it has outgrown its type, or does not match the database afterwards)."""
        generation, count, removed, added, vectors = self.store.changes_since(self.generation)
        if generation < self.generation:  # a database older than the file (restored from a backup)
            return False
        if generation == self.generation:
            return self.index.ntotal == count
        if self.kind == "hnsw" or choose_index_type(count) != self.kind:
            return False
        if self.kind.startswith("ivf") and count > REBUILD_GROWTH * max(self.trained_on, 1):
            return False
        if "Gpu" in type(self.index).__name__:
            return False  # GPU indexes are rebuilt rather than edited
        if len(removed):
            self.index.remove_ids(np.unique(removed))
        if len(added):
            if self.distance == "cosine":
                vectors = normalise(vectors)
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), added)
        self.generation, self.how = generation, "updated"
        return self.index.ntotal == count

    def save(self) -> None:
        """faces.faiss and its sidecar, each replaced atomically (sidecar last: a kill in between
        leaves a sidecar that no longer matches, and the next open rebuilds)."""
        path, info_path = self.store.dir / FAISS_NAME, self.store.dir / FAISS_INFO
        tmp = path.with_suffix(".faiss.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        tmp_info = info_path.with_suffix(".tmp")
        tmp_info.write_text(json.dumps({"generation": self.generation, "faces": self.index.ntotal, "kind": self.kind,
                                        "trained_on": self.trained_on, "model": store_identity(self.store)}))
        os.replace(tmp_info, info_path)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, vector: np.ndarray, k: int, exclude=None) -> list[SearchHit]:
        """The k nearest faces; distance is Euclidean for l2 models, 1 - cosine for cosine ones.
        exclude: face ids never to return (on a GPU index: searched deeper and filtered)."""
        query = self._query(vector)
        exclude = np.unique(np.asarray(list(exclude) if exclude is not None else [], np.int64))
        k = min(k, self.index.ntotal - (len(exclude) if "Gpu" not in type(self.index).__name__ else 0))
        if k <= 0:
            return []
        if not len(exclude):
            squared, ids = self.index.search(query, k)
        elif "Gpu" in type(self.index).__name__:  # GPU indexes take no selector
            squared, ids = self.index.search(query, min(self.index.ntotal, k + len(exclude)))
            keep = ~np.isin(ids[0], exclude)
            squared, ids = squared[:, keep][:, :k], ids[:, keep][:, :k]
        else:
            params = self._search_parameters(faiss.IDSelectorNot(faiss.IDSelectorBatch(exclude)))
            squared, ids = self.index.search(query, k, params=params)
        return self._hits(squared[0], ids[0])

    def search_among(self, vector: np.ndarray, k: int, face_ids: np.ndarray, vectors: np.ndarray) -> list[SearchHit]:
        """The k nearest of the given faces (ids and their stored vectors), exactly: for searches
        within a few faces (one person's), where an IVF index could miss some."""
        vectors = np.asarray(vectors, np.float32).reshape(len(face_ids), -1)
        if self.distance == "cosine" and len(vectors):
            vectors = normalise(vectors)
        squared = ((vectors - self._query(vector)) ** 2).sum(1)
        order = np.argsort(squared, kind="stable")[:k]
        return self._hits(squared[order], np.asarray(face_ids, np.int64)[order])

    def _query(self, vector: np.ndarray) -> np.ndarray:
        query = np.asarray(vector, np.float32).reshape(1, -1)
        return normalise(query) if self.distance == "cosine" else query

    def _search_parameters(self, selector):
        """Search parameters with a selector; IVF lists keep their nprobe (flat and HNSW sit in an
        IndexIDMap2, which maps the selector's face ids to its positions)."""
        ivf = faiss.try_extract_index_ivf(self.index) if not isinstance(self.index, faiss.IndexIDMap2) else None
        if ivf is not None:
            return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
        return faiss.SearchParameters(sel=selector)

    def _hits(self, squared: np.ndarray, ids: np.ndarray) -> list[SearchHit]:
        hits = []
        for d2, face_id in zip(squared, ids):
            if face_id < 0:
                continue
            d2 = max(float(d2), 0.0)
            distance = d2 / 2.0 if self.distance == "cosine" else float(np.sqrt(d2))
            hits.append(SearchHit(int(face_id), distance))
        return hits

    def size_on_disk(self) -> int:
        path = self.store.dir / FAISS_NAME
        return path.stat().st_size if path.exists() else 0


def index_report(store: FaceStore, index: VectorIndex) -> dict:
    """What an index holds, as `fecsearch info`, the Python API and the server report it."""
    return {"model": store.meta("model"), "dim": int(store.meta("dim", "0") or 0), "distance": store.meta("distance"),
            "mirror_average": store.meta("mirror_average", "0") == "1", **store.counts(),
            "generation": store.generation, "searchable_faces": len(index), "index_type": index.kind}
