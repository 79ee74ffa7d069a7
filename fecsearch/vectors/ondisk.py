"""IVF indexes past one machine's memory: built in shards, merged into inverted lists on disk,
memory-mapped for search.

At 100M faces the compressed lists (IVF-SQ8: 16 bytes a vector and 8 of id) are 2.4 GB, and the
vectors they are built from 6.4 GB: neither needs to be in memory at once. One trained, empty IVF
index is copied to every shard, which adds its own vectors (on its own machine, if need be) and is
written alone; `merge_ondisk` concatenates the shards' lists into one `lists.ivfdata` file; the
merged index refers to that file, and `open_mapped` maps it instead of reading it, so a search
process holds the coarse quantizer and the pages its queries touch.

An index folder's lists (`faces.ivf-<generation>-<random>/`) are built from its database by
`build_from_store`, two streaming passes in one read transaction: a sample to train on, then the
vectors, a shard at a time. The lists are never edited: `MappedLists` searches them beside a small
exact index of the faces added since and leaves out the faces removed since, until the changes are
many enough to build the lists again (vectors/faiss_index.VectorIndex decides).
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import faiss
import numpy as np

from fecsearch.vectors.kinds import ONDISK, build_faiss, ivf_lists, nprobe_for
from fecsearch.vectors.metrics import normalise

MERGED_NAME = "index.faiss"


LISTS_NAME = "lists.ivfdata"
TRAINED_NAME = "trained.faiss"  # the empty trained index: lists built again reuse its training
FOLDER_PREFIX = "faces.ivf-"
# Vectors a shard holds: 5M are 320 MB as float32 while they are added, 120 MB of lists written.
SHARD_ROWS = 5_000_000


def trained_ivf(sample: np.ndarray, kind: str, lists: int) -> faiss.Index:
    """An empty IVF index of `kind` (ivf, ivf-sq8, ivf-pq) with `lists` lists, trained on `sample`."""
    return build_faiss(sample, np.zeros(0, np.int64), kind, lists=lists)


def write_shard(trained: faiss.Index, vectors: np.ndarray, ids: np.ndarray, path: str | Path) -> Path:
    """One shard: a copy of the trained index with these vectors added, written to `path`."""
    shard = faiss.clone_index(trained)
    shard.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(shard, str(tmp))
    tmp.replace(path)
    return path


def merge_shards(trained: faiss.Index, shards: Iterable[str | Path], folder: str | Path,
                 final_folder: str | Path | None = None) -> Path:
    """The shards' inverted lists merged into `folder/lists.ivfdata`, and the index that reads them
    written as `folder/index.faiss`. final_folder: where the folder will be moved once whole; the
    index records the lists' path there (FAISS otherwise prints a line each time it opens them)."""
    from faiss.contrib.ondisk import merge_ondisk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = faiss.clone_index(trained)
    merge_ondisk(merged, [str(s) for s in shards], str(folder / LISTS_NAME))
    if final_folder is not None:
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(merged).invlists)
        lists.filename = str(Path(final_folder).resolve() / LISTS_NAME)
    faiss.write_index(merged, str(folder / MERGED_NAME))
    return folder / MERGED_NAME


@contextmanager
def _c_output_silenced():
    """File descriptors 1 and 2 pointed at /dev/null for a moment: FAISS prints to stdout, which
    would corrupt `--json` output (its errors still raise as exceptions)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def open_mapped(path: str | Path, nprobe: int | None = None) -> faiss.Index:
    """A merged on-disk index opened for search. Its lists stay in `lists.ivfdata`, which FAISS maps
    into memory (OnDiskInvertedLists) rather than reads; the file is looked for beside the index,
    so the folder can move. (IO_FLAG_MMAP, which maps the index file itself, crashes on these.)"""
    with _c_output_silenced():  # FAISS prints a line at every such open, even when nothing moved
        index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    if nprobe:
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def ondisk_lists(n: int) -> int:
    """Lists for n faces: the power of two nearest 1.8 sqrt(n), as measured at 20M (8,192 lists) and
    100M (16,384) with nprobe 128 (benchmarks/RESULTS.md, "IVF lists on disk"). Fewer than
    ivf_lists' 4 sqrt(n), which at 100M would train 40,000 centroids for little recall."""
    return int(min(2 ** round(np.log2(max(1.8 * np.sqrt(max(n, 1)), 1))), ivf_lists(n)))


def build_from_store(store, parent: str | Path, trained: faiss.Index | None = None, cosine: bool = False,
                     shard_rows: int = SHARD_ROWS) -> dict:
    """IVF-SQ8 lists on disk for every face of `store`, in `parent/faces.ivf-<generation>-<random>/`.

    Streams the database twice in one read transaction (a sample to train on, unless `trained` is
    given; then the vectors, `shard_rows` at a time, each shard written alone), merges the shards'
    lists into one file, and moves the finished folder into place, so a folder under that name is
    always whole. Returns what the sidecar records: generation, faces, trained_on, lists folder,
    the largest face id in the lists.
    """
    parent = Path(parent)
    rng = np.random.default_rng(0)
    with store.read_transaction():
        generation, count = store.generation, store.face_count()
        trained_on = count
        if trained is None:
            lists = ondisk_lists(count)
            keep = min(1.0, 64 * lists / max(count, 1))
            sample = [v[rng.random(len(v)) < keep] for _, v in store.embedding_chunks()]
            sample = np.concatenate(sample) if sample else np.zeros((0, int(store.meta("dim", "16"))), np.float32)
            trained = trained_ivf(normalise(sample) if cosine else sample, "ivf-sq8", lists)
        else:
            trained_on = -1  # the caller keeps the count its training came from
        # a name of its own even when the generation is the same (--rebuild-index): the folder a
        # sidecar names is never replaced under a search that maps it
        name = f"{FOLDER_PREFIX}{generation}-{uuid.uuid4().hex[:8]}"
        work = parent / f".{name}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shards, max_id = [], -1
        for i, (ids, vectors) in enumerate(store.embedding_chunks(shard_rows)):
            shards.append(write_shard(trained, normalise(vectors) if cosine else vectors, ids,
                                      work / f"shard-{i}.faiss"))
            max_id = int(ids[-1])
    merge_shards(trained, shards, work, final_folder=parent / name)
    for shard in shards:
        shard.unlink()
    faiss.write_index(trained, str(work / TRAINED_NAME))
    work.rename(parent / name)
    return {"generation": generation, "faces": count, "trained_on": trained_on, "lists": name, "max_id": max_id}


def remove_other_lists(parent: str | Path, keep: str | None) -> None:
    """Lists folders no sidecar names any more (a search that still maps one keeps reading it: the
    files live on until it lets go)."""
    for folder in Path(parent).glob(f"{FOLDER_PREFIX}*"):
        if folder.name != keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


class MappedLists:
    """Lists on disk, mapped, plus what changed since they were built: faces removed since (left out
    of every search by a selector) and faces added since (an exact index in memory). Searched like
    one index; `ntotal` counts the faces it answers with."""

    def __init__(self, folder: str | Path, max_id: int):
        self.folder = Path(folder)
        self.main = open_mapped(self.folder / MERGED_NAME, nprobe_for(ONDISK))
        self.nprobe = faiss.extract_index_ivf(self.main).nprobe
        self.max_id = max_id
        self.d = self.main.d
        self.set_changes(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, self.d), np.float32))

    def set_changes(self, removed: np.ndarray, added: np.ndarray, vectors: np.ndarray) -> None:
        """The changes since the lists were built (store.changes_since their generation)."""
        self.removed = np.unique(np.asarray(removed, np.int64))
        # Faces added later have larger ids (SQLite numbers rows past the largest), so ids up to the
        # lists' largest were in them; a rare reuse of an id miscounts, and the caller's count check
        # then builds the lists again.
        self.removed_from_main = int((self.removed <= self.max_id).sum())
        # The lists' removed faces as a bitmap over their ids, checked on the few results a search
        # returns: a FAISS selector tests every vector scanned, which made a query at 20M faces with
        # 50,000 removed take 5.8 ms instead of 2.9 (benchmarks/RESULTS.md).
        in_main = self.removed[self.removed <= self.max_id]
        self._removed_bits = np.zeros((self.max_id >> 3) + 1, np.uint8)
        np.bitwise_or.at(self._removed_bits, in_main >> 3, (1 << (in_main & 7)).astype(np.uint8))
        self.delta = faiss.IndexIDMap2(faiss.IndexFlatL2(self.d))
        if len(added):
            self.delta.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(added, np.int64))

    @property
    def ntotal(self) -> int:
        return self.main.ntotal - self.removed_from_main + self.delta.ntotal

    @property
    def changes(self) -> int:
        return len(self.removed) + self.delta.ntotal

    def trained(self) -> faiss.Index:
        return faiss.read_index(str(self.folder / TRAINED_NAME))

    def search(self, query: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and ids of the k nearest, as faiss.Index.search returns them (one query)."""
        exclude = np.asarray(exclude, np.int64)
        found = [self._search_lists(query, k, exclude)]
        if self.delta.ntotal:
            params = faiss.SearchParameters()
            if len(exclude):
                batch = faiss.IDSelectorBatch(exclude)
                params.sel = faiss.IDSelectorNot(batch)
            found.append(self.delta.search(query, min(k, self.delta.ntotal), params=params))
        squared = np.concatenate([d for d, _ in found], 1)
        ids = np.concatenate([i for _, i in found], 1)
        squared[ids < 0] = np.inf
        order = np.argsort(squared, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(squared, order, 1), np.take_along_axis(ids, order, 1)

    def _search_lists(self, query: np.ndarray, k: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest in the lists that are neither removed nor excluded: more are asked for, the
        rest dropped, and asked for again (four times as many) in the rare case too few are left."""
        params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        ask = k + len(exclude) + max(k, 10)
        while True:
            ask = min(ask, self.main.ntotal)
            squared, ids = self.main.search(query, ask, params=params)
            squared, ids = squared[0], ids[0]
            keep = ids >= 0
            keep[keep] = ((self._removed_bits[ids[keep] >> 3] >> (ids[keep] & 7)) & 1) == 0
            if len(exclude):
                keep &= ~np.isin(ids, exclude)
            # done: enough left, or nothing more to find (the lists searched hold fewer than asked)
            if keep.sum() >= k or ask >= self.main.ntotal or (ids < 0).any():
                squared, ids = squared[keep][:k], ids[keep][:k]
                pad = k - len(ids)
                return (np.concatenate([squared, np.full(pad, np.inf, np.float32)])[None],
                        np.concatenate([ids, np.full(pad, -1, np.int64)])[None])
            ask *= 4

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())
