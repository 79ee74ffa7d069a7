"""The SQLite database, the source of truth of an index, and the rating study's votes."""

from pathlib import Path

DB_NAME = "faces.db"
DEFAULT_INDEX_DIR = Path("indexes/default")  # relative to where the command runs
