"""The index the query and server benchmarks search: ../shared/data/photos with the default model."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def photos_index(index: Path | None, *options: str) -> Path:
    """`index` when it already holds an index, else a fresh index of the photos (built in a temp folder,
    with `fecsearch index` options such as "--precision", "fp32")."""
    index = index or Path(tempfile.mkdtemp()) / "idx"
    if not (index / "faces.db").exists():
        subprocess.run([sys.executable, "-m", "fecsearch", "index", str(PHOTOS), "--index", str(index), "--quiet",
                        *options], check=True, stdout=subprocess.DEVNULL)
    return index


def timed_fecsearch(args: list[str]) -> float:
    """Seconds a fresh `fecsearch ARGS` process takes, its output discarded."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fecsearch", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start
