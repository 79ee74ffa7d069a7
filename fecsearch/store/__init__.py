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


class ReadOnlyDatabase:
    """The part of sqlite_utils.Database that reading an index uses (execute, query, table_names),
    on plain sqlite3: importing sqlite_utils (and the dateutil it brings) is 150 ms of a cold
    `query --id`, and a read-only open needs only SQL."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, parameters=()):
        return self.conn.execute(sql, parameters or ())

    def query(self, sql: str, params=()):
        cursor = self.conn.execute(sql, params or ())
        keys = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(keys, row))

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("select name from sqlite_master where type = 'table'")]
