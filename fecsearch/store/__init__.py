"""The SQLite database, the source of truth of an index, and the rating study's votes."""

import sys
from pathlib import Path

DB_NAME = "faces.db"
DEFAULT_INDEX_DIR = Path("indexes/default")  # relative to where the command runs


class IndexUnusable(RuntimeError):
    """The index folder cannot be used as it is; the message says why and what to do."""


def import_sqlite_utils():
    """sqlite_utils, imported without pandas. It imports pandas whenever pandas is installed (Ray
    brings it) for a column type fecsearch never stores, and that is 1.2 s of a cold query here.
    Where pandas is already loaded it is left alone."""
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils
        return sqlite_utils
    sys.modules["pandas"] = None  # import pandas now raises ImportError, which sqlite_utils expects
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]  # later imports of pandas work as usual
    return sqlite_utils
