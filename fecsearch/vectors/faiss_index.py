"""The FAISS index over a FaceStore's embeddings: derived data that follows the database.

faces.faiss.json records the database generation the file reflects. When the database has moved
on, the changes since then (store.changes_since) are applied: removed ids removed, new vectors
added (to the trained lists of an IVF index). The index is built again from the database instead
when the file is missing, unreadable or from another model, when the collection has outgrown its
index type, when an IVF index holds REBUILD_GROWTH times the faces it was trained on, or on
`fecsearch index --rebuild-index`.

The largest collections (vectors.kinds.ONDISK_FROM, or `index --index-type ivf-sq8-disk`) keep
their lists on disk in `faces.ivf-<generation>-<random>/`, which the sidecar names. Those lists
are never edited: the changes since they were built are applied beside them in memory at each
open (vectors/ondisk.MappedLists) until they number DELTA_LIMIT, when an indexing run builds the
lists again, reusing their training.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import faiss
import numpy as np

from fecsearch.store.database import FaceStore
from fecsearch.vectors import ondisk
from fecsearch.vectors.kinds import ONDISK, build_faiss, choose_index_type
from fecsearch.vectors.metrics import normalise

FAISS_NAME = "faces.faiss"
FAISS_INFO = "faces.faiss.json"
# IVF lists trained on n vectors serve well up to a few times n; past that, train again.
REBUILD_GROWTH = 4
# Changes held beside lists on disk before an indexing run builds them again: a million faces are
# 64 MB and 7 ms of exact search a query (benchmarks/RESULTS.md, "FAISS: search time").
DELTA_LIMIT = 1_000_000


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
        self.base_generation = generation  # lists on disk: the generation they were built from
        self.trained_on = trained_on  # faces at the last build (IVF lists were trained on them)
        self.distance = store.meta("distance", "l2")

    @property
    def rebuilt(self) -> bool:
        return self.how == "rebuilt"

    @classmethod
    def open(cls, store: FaceStore, force_rebuild: bool = False, gpu: bool = True, save: bool = True) -> "VectorIndex":
        """save=False keeps what it builds or updates in memory: for readers (a server) that must not
        race the indexer's writes. (Lists on disk are the exception: a reader that finds none, or
        none it can use, builds them in memory as IVF-SQ8 instead.)"""
        path, info_path = store.dir / FAISS_NAME, store.dir / FAISS_INFO
        wanted = store.meta("index_type", "auto") or "auto"
        loaded, info = None, {}
        if not force_rebuild and info_path.exists():
            try:
                info = json.loads(info_path.read_text())
                # The vectors must be this model's, not merely as many as the database holds.
                if info.get("model") == store_identity(store) and "trained_on" in info:
                    if info["kind"] == ONDISK:
                        index = ondisk.MappedLists(store.dir / info["lists"], info["max_id"])
                    elif path.exists():
                        index = faiss.read_index(str(path))
                    else:
                        index = None
                    if index is not None and index.d == int(store.meta("dim", "0") or 0):
                        loaded = cls(store, "loaded", info["kind"], index, info["generation"], info["trained_on"])
            except Exception:  # unreadable or truncated: the database has everything to rebuild it
                loaded = None
        if loaded is not None and loaded.catch_up(wanted, rebuild_allowed=save):
            if loaded.how == "updated" and save and loaded.kind != ONDISK:
                loaded.save()
            if gpu and loaded.kind != ONDISK:
                loaded.index = to_gpu_if_available(loaded.index)
            return loaded
        count = store.face_count()  # a full count: 0.14 s at 20M faces, so read once
        kind = choose_index_type(count, wanted)
        if kind == ONDISK and save:
            # Lists rebuilt only because changes piled up keep their training (a second pass saved).
            same_training = (loaded is not None and loaded.kind == ONDISK
                             and count <= REBUILD_GROWTH * max(loaded.trained_on, 1))
            built = cls.build_ondisk(store, loaded.index.trained() if same_training else None,
                                     loaded.trained_on if same_training else None)
            built.catch_up(wanted, rebuild_allowed=False)  # what an indexer committed meanwhile
            return built
        generation, ids, vectors = store.snapshot()
        if store.meta("distance") == "cosine" and len(vectors):
            vectors = normalise(vectors)
        kind = choose_index_type(len(ids), wanted)
        if kind == ONDISK:  # a reader: lists in memory, as it may not write
            kind = "ivf-sq8"
        dim = vectors.shape[1] if len(ids) else int(store.meta("dim", "16") or 16)
        built = cls(store, "rebuilt", kind, build_faiss(vectors.reshape(len(ids), dim), ids, kind), generation,
                    len(ids))
        if save:
            built.save()
        if gpu:
            built.index = to_gpu_if_available(built.index)
        return built

    @classmethod
    def build_ondisk(cls, store: FaceStore, trained=None, trained_on: int | None = None) -> "VectorIndex":
        """Lists on disk for the whole database (vectors/ondisk.build_from_store), then the sidecar that
        names them; older lists and a flat faces.faiss are removed once it does."""
        info = ondisk.build_from_store(store, store.dir, trained, cosine=store.meta("distance") == "cosine")
        if trained_on is not None:
            info["trained_on"] = trained_on
        built = cls(store, "rebuilt", ONDISK, ondisk.MappedLists(store.dir / info["lists"], info["max_id"]),
                    info["generation"], info["trained_on"])
        built.save()
        return built

    def catch_up(self, wanted: str = "auto", rebuild_allowed: bool = True) -> bool:
        """Apply the database's changes since self.generation; False when the index must be built
        again instead (it has outgrown its type, or does not match the database afterwards)."""
        if self.kind == ONDISK:
            return self._catch_up_ondisk(wanted, rebuild_allowed)
        generation, count, removed, added, vectors = self.store.changes_since(self.generation)
        if generation < self.generation:  # a database older than the file (restored from a backup)
            return False
        if choose_index_type(count, wanted) != self.kind:  # outgrown, or another kind asked for
            return False
        if generation == self.generation:
            return self.index.ntotal == count
        if self.kind == "hnsw":
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

    def _catch_up_ondisk(self, wanted: str, rebuild_allowed: bool) -> bool:
        """Lists on disk stay as built (at self.base_generation); every change since is set beside them."""
        generation, count, removed, added, vectors = self.store.changes_since(self.base_generation)
        if generation < self.base_generation or choose_index_type(count, wanted) != ONDISK:
            return False
        if count > REBUILD_GROWTH * max(self.trained_on, 1):
            return False
        if rebuild_allowed and len(removed) + len(added) > DELTA_LIMIT:
            return False
        if self.distance == "cosine" and len(vectors):
            vectors = normalise(vectors)
        self.index.set_changes(removed, added, vectors)
        if generation != self.generation:
            self.generation, self.how = generation, "updated"
        return self.index.ntotal == count

    def save(self) -> None:
        """faces.faiss (or, for lists on disk, nothing: they are written whole when built) and its
        sidecar, each replaced atomically (sidecar last: a kill in between leaves a sidecar that no
        longer matches, and the next open rebuilds)."""
        path, info_path = self.store.dir / FAISS_NAME, self.store.dir / FAISS_INFO
        info = {"generation": self.generation, "faces": self.index.ntotal, "kind": self.kind,
                "trained_on": self.trained_on, "model": store_identity(self.store)}
        if self.kind == ONDISK:
            info.update(generation=self.base_generation, lists=self.index.folder.name, max_id=self.index.max_id)
        else:
            tmp = path.with_suffix(".faiss.tmp")
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, path)
        tmp_info = info_path.with_suffix(".tmp")
        tmp_info.write_text(json.dumps(info))
        os.replace(tmp_info, info_path)
        # What the sidecar no longer names: the other kind's files
        ondisk.remove_other_lists(self.store.dir, info.get("lists"))
        if self.kind == ONDISK:
            path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, vector: np.ndarray, k: int, exclude=None) -> list[SearchHit]:
        """The k nearest faces; distance is Euclidean for l2 models, 1 - cosine for cosine ones.
        exclude: face ids never to return (on a GPU index: searched deeper and filtered)."""
        query = self._query(vector)
        # np.unique loads numpy.ma on first use, 90 ms of a cold query: only when there is something to exclude
        exclude = np.asarray(list(exclude) if exclude is not None else [], np.int64)
        exclude = np.unique(exclude) if len(exclude) else exclude
        k = min(k, self.index.ntotal - (len(exclude) if "Gpu" not in type(self.index).__name__ else 0))
        if k <= 0:
            return []
        if self.kind == ONDISK:
            squared, ids = self.index.search(query, k, exclude)
        elif not len(exclude):
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
        if self.kind == ONDISK:
            return self.index.size_on_disk()
        path = self.store.dir / FAISS_NAME
        return path.stat().st_size if path.exists() else 0


def index_report(store: FaceStore, index: VectorIndex) -> dict:
    """What an index holds, as `fecsearch info`, the Python API and the server report it."""
    return {"model": store.meta("model"), "dim": int(store.meta("dim", "0") or 0), "distance": store.meta("distance"),
            "mirror_average": store.meta("mirror_average", "0") == "1", "precision": store.embedding_precision,
            **store.counts(),
            "generation": store.generation, "searchable_faces": len(index), "index_type": index.kind}
