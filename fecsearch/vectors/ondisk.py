"""IVF indexes past one machine's memory: built in shards, merged into inverted lists on disk,
memory-mapped for search.

At 100M faces the compressed lists (IVF-SQ8: 16 bytes a vector and 8 of id) are 2.4 GB, and the
vectors they are built from 6.4 GB: neither needs to be in memory at once. One trained, empty IVF
index is copied to every shard, which adds its own vectors (on its own machine, if need be) and is
written alone; `merge_ondisk` concatenates the shards' lists into one `lists.ivfdata` file; the
merged index refers to that file, and `open_mapped` maps it instead of reading it, so a search
process holds the coarse quantizer and the pages its queries touch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import faiss
import numpy as np

from fecsearch.vectors.faiss_index import build_faiss

MERGED_NAME = "index.faiss"


LISTS_NAME = "lists.ivfdata"


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


def merge_shards(trained: faiss.Index, shards: Iterable[str | Path], folder: str | Path) -> Path:
    """The shards' inverted lists merged into `folder/lists.ivfdata`, and the index that reads them
    written as `folder/index.faiss`."""
    from faiss.contrib.ondisk import merge_ondisk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = faiss.clone_index(trained)
    merge_ondisk(merged, [str(s) for s in shards], str(folder / LISTS_NAME))
    faiss.write_index(merged, str(folder / MERGED_NAME))
    return folder / MERGED_NAME


def open_mapped(path: str | Path, nprobe: int | None = None) -> faiss.Index:
    """A merged on-disk index opened for search. Its lists stay in `lists.ivfdata`, which FAISS maps
    into memory (OnDiskInvertedLists) rather than reads; the file is looked for beside the index,
    so the folder can move. (IO_FLAG_MMAP, which maps the index file itself, crashes on these.)"""
    index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    if nprobe:
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index
