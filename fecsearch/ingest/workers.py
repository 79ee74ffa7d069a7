"""The per-image work of indexing (read, decode; for photos also detect and align) and the engine
that runs it ahead of the indexer, with bounded memory."""
from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from fecsearch.faces.images import BadImage, decode_image, original_size, read_bytes


@dataclass
class Decoded:
    path: Path
    size: int
    mtime: float
    sha256: str | None = None
    image: object = None  # photos: released once their faces are cropped (see Indexer._load)
    error: str | None = None
    faces: list | None = None  # found in the worker thread (photos), or later in a batch (crops)
    width: int | None = None
    height: int | None = None


def decode_file(item: tuple[Path, int, float]) -> Decoded:
    path, size, mtime = item
    try:
        data = read_bytes(path)
        image = decode_image(data, path)
        width, height = original_size(image)
        return Decoded(path, size, mtime, hashlib.sha256(data).hexdigest(), image, width=width, height=height)
    except BadImage as err:
        return Decoded(path, size, mtime, error=str(err))


@contextmanager
def torch_threads(n: int | None):
    """Run the block with torch's intra-op pool at n threads (None: leave it as it is)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_ahead(pool: ThreadPoolExecutor, items: list, ahead: int,
                 load: Callable[[tuple[Path, int, float]], Decoded] = decode_file) -> Iterator[Decoded]:
    """Run `load` in the pool, in order, at most `ahead` images in flight: memory stays bounded however
    large the folder (Executor.map would queue every file at once)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(load, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class ThreadEngine:
    """Runs the per-image work on a thread pool in this process, in order, at most `ahead` images in
    flight. An engine is this one method: another (across machines, say) replaces this class and
    nothing else in the indexer."""

    def __init__(self, workers: int):
        self.workers = workers

    def map(self, load: Callable[[tuple[Path, int, float]], Decoded], items: list, ahead: int) -> Iterator[Decoded]:
        with ThreadPoolExecutor(self.workers) as pool:
            yield from decode_ahead(pool, items, ahead, load)
