"""One writer per index: a lock file beside the database."""
from __future__ import annotations

from pathlib import Path


class WriterLock:
    """fcntl lock on a file beside the database: held for a writing run, freed when the process ends."""

    def __init__(self, path: Path, wait_message=None):
        self.path, self.wait_message, self.file = path, wait_message, None

    def __enter__(self) -> "WriterLock":
        import fcntl

        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.wait_message:
                self.wait_message(f"{self.path.parent}: another `fecsearch index` run is writing this index; "
                                  f"waiting for it to finish")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
