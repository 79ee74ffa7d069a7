"""The SQLite database: the source of truth for what an index holds.

Tables (open the file with sqlite3 or datasette; the columns are in COLUMNS below):
  meta    key/value: schema_version, generation (bumped by every write), model, dim, distance,
          weights_sha256, mirror_average (1 when faces are embedded with their mirror image),
          precision (fp32, or int8 for the model's int8 graph; absent: fp32),
          checkpoint (weights file, when not the model's shipped ones)
  runs    one row per `fecsearch index` run: when, what, counts, status
  images  one row per file seen: path, size, mtime, sha256, status ok|skipped, error, face count
  faces   one row per face: image, box, landmarks, detection probability, embedding (float32 bytes)
  labels  one emotion label per face (fecsearch label): face_id, label, source
  identities   one identity descriptor per face (models/identity.py): face_id, descriptor (float16
          bytes, 1024 values); meta.identity_sha256 names the weights they come from
  people       one row per person found by `fecsearch people`: id, name (NULL until named)
  face_people  which person each clustered face belongs to: face_id, person_id

The tables and the model's settings are each written in one transaction, so a run killed while it
creates an index leaves either nothing or a whole index. An index written by an older fecsearch
(a lower schema_version, or none) is migrated by the next run that writes it: missing columns are
added, in the same transaction. Commands that only read open the file
read-only; `index` holds a lock file beside it, so one run writes an index at a time.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fecsearch.store import DB_NAME, IndexUnusable, ReadOnlyDatabase, import_sqlite_utils
from fecsearch.store.identities import IDENTITY_TABLES, IdentityTables
from fecsearch.store.integrity import IntegrityChecks
from fecsearch.store.vectors import VectorReads

SCHEMA_VERSION = 3  # 2: faces.generation and removed_faces, so FAISS can follow changes; 3: identities, people
# Read-only commands open indexes from this version on: what later versions add (the identity
# tables) reads as empty until a run that writes the index adds it.
READABLE_SINCE = 2
# The schema, in one place: table -> columns. Columns missing from an older index are added on its
# next write (see _create_tables); a new column therefore needs a default-free, nullable type.
COLUMNS = {
    "meta": ["key TEXT PRIMARY KEY", "value TEXT"],
    "runs": ["id INTEGER PRIMARY KEY", "started_at FLOAT", "finished_at FLOAT", "command TEXT", "root TEXT",
             "model TEXT", "images_added INTEGER", "images_removed INTEGER", "faces_added INTEGER",
             "skipped INTEGER", "status TEXT"],
    "images": ["id INTEGER PRIMARY KEY", "path TEXT", "size INTEGER", "mtime FLOAT", "sha256 TEXT", "width INTEGER",
               "height INTEGER", "status TEXT", "error TEXT", "faces INTEGER", "run_id INTEGER REFERENCES runs(id)",
               "indexed_at FLOAT"],
    "faces": ["id INTEGER PRIMARY KEY", "image_id INTEGER REFERENCES images(id)", "face_index INTEGER", "x1 FLOAT",
              "y1 FLOAT", "x2 FLOAT", "y2 FLOAT", "probability FLOAT", "landmarks TEXT", "embedding BLOB",
              "model TEXT", "run_id INTEGER REFERENCES runs(id)",
              "generation INTEGER",  # the database generation that added the face (NULL: before schema 2)
              # videos: seconds into the video of the face's frame, and the run of frames it stands for
              "time FLOAT", "run_start FLOAT", "run_end FLOAT"],
    "labels": ["face_id INTEGER PRIMARY KEY REFERENCES faces(id)", "label TEXT", "source TEXT"],
    # Faces deleted since schema 2, with the generation that deleted them: with faces.generation,
    # what changed since the generation a FAISS file was built from (see changes_since).
    "removed_faces": ["face_id INTEGER", "generation INTEGER"],
    "identities": ["face_id INTEGER PRIMARY KEY REFERENCES faces(id)", "descriptor BLOB"],
    "people": ["id INTEGER PRIMARY KEY", "name TEXT"],
    "face_people": ["face_id INTEGER PRIMARY KEY REFERENCES faces(id)", "person_id INTEGER REFERENCES people(id)"],
}
SQL_INDEXES = ["create unique index if not exists idx_images_path on images (path)",
               "create index if not exists idx_faces_image_id on faces (image_id)",
               "create index if not exists idx_faces_generation on faces (generation)",
               "create index if not exists idx_removed_faces_generation on removed_faces (generation)",
               "create index if not exists idx_face_people_person on face_people (person_id)"]


class ModelMismatch(ValueError):
    pass


TABLES = tuple(COLUMNS)


def damaged(path: Path, err: Exception) -> IndexUnusable:
    return IndexUnusable(
        f"{path}: the database is damaged ({err}). Recover what it holds with "
        f"`sqlite3 {path} .recover | sqlite3 recovered.db` and move recovered.db in its place, or delete "
        f"the index folder and run `fecsearch index` again.")


@dataclass
class FaceRecord:
    image_id: int
    face_index: int
    box: tuple[float, float, float, float]
    probability: float
    landmarks: list | None
    embedding: np.ndarray
    time: float | None = None  # videos (see COLUMNS)
    run: tuple[float, float] | None = None
    identity: np.ndarray | None = None  # videos: described while indexing (they are followed by it)


class FaceStore(IdentityTables, IntegrityChecks, VectorReads):
    def __init__(self, index_dir: str | os.PathLike, create: bool = True, readonly: bool = False):
        self.dir = Path(index_dir)
        path = self.dir / DB_NAME
        if path.is_dir():
            raise IndexUnusable(f"{path} is a folder, not a fecsearch database; remove it or choose another --index.")
        if (readonly or not create) and not path.exists():
            raise FileNotFoundError(f"{self.dir}: no fecsearch index here (no {DB_NAME}); "
                                    "build one with `fecsearch index`")
        self.readonly = readonly
        conn = None
        try:
            if readonly:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60,
                                       isolation_level=None)
            else:
                self.dir.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db = ReadOnlyDatabase(conn) if readonly else import_sqlite_utils().Database(conn)
            tables = set(self.db.table_names())
            foreign = tables - set(TABLES) - {"sqlite_sequence", "sqlite_stat1"}
            if foreign or (tables and "meta" not in tables):
                conn.close()
                raise IndexUnusable(f"{path} is an SQLite database but not a fecsearch index (it has tables "
                                    f"{', '.join(sorted(tables))}); choose another --index.")
            if not readonly:
                # WAL: readers (queries, a server) never see half a batch and never block the indexer.
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
            # read here: where the meta table's pages are the damaged ones, this is the first read to fail
            version = self.schema_version() if "meta" in tables else SCHEMA_VERSION
        except sqlite3.DatabaseError as err:
            if conn is not None:  # not left open by a half-made store (a process may open the file again)
                conn.close()
            raise damaged(path, err) from None
        if version > SCHEMA_VERSION:
            raise IndexUnusable(f"{path} was written by a newer fecsearch (schema {version}; this one reads "
                                f"{SCHEMA_VERSION}); upgrade fecsearch.")
        if readonly and version < READABLE_SINCE:  # a writable open migrates it
            raise IndexUnusable(f"{path} was written by an older fecsearch (schema {version}; this one reads "
                                f"{SCHEMA_VERSION}); run `fecsearch index --index {self.dir} FOLDER` once to "
                                f"upgrade it (nothing is embedded again).")
        self.tables = tables
        if readonly and set(TABLES) - set(IDENTITY_TABLES) - tables:
            raise FileNotFoundError(f"{self.dir}: the index is empty (its first run stopped before any "
                                    f"image was written); run `fecsearch index`")
        if not readonly:
            self._create_tables()
            self.tables = set(TABLES)

    def schema_version(self) -> int:
        """The index's schema version; 0 for an index from before versions were recorded."""
        return int(self.meta("schema_version", "0") or 0)

    def _create_tables(self) -> None:
        """Every table, index and meta row in one transaction: a kill leaves all of it or none.
        Idempotent, so an index whose creation was cut short by an older version is completed."""
        db = self.db
        with db.conn:
            db.execute("BEGIN IMMEDIATE")
            for table, columns in COLUMNS.items():
                db.execute(f"create table if not exists {table} ({', '.join(columns)})")
                have = {row[1] for row in db.execute(f"pragma table_info({table})").fetchall()}
                for column in columns:  # an index from an older fecsearch: add what it lacks
                    if column.split()[0] not in have:
                        db.execute(f"alter table {table} add column {column}")
            for statement in SQL_INDEXES:
                db.execute(statement)
            db.execute("insert or ignore into meta (key, value) values ('generation', '0')")
            if self.schema_version() < SCHEMA_VERSION:  # new, or migrated above
                db.execute("insert or replace into meta (key, value) values ('schema_version', ?)",
                           [str(SCHEMA_VERSION)])

    def meta(self, key: str, default: str | None = None) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else default

    def set_meta(self, key: str, value) -> None:
        self.db["meta"].upsert({"key": key, "value": str(value)}, pk="key")

    @property
    def generation(self) -> int:
        """Bumped by every change to the faces: the FAISS file records the generation it was built from."""
        return int(self.meta("generation", "0"))

    def bind_model(self, name: str, dim: int, distance: str, checksum: str, mirror_average: bool = False,
                   precision: str = "fp32") -> bool:
        """Record the index's model on first use (in one transaction); refuse another model afterwards.
        Returns whether the index's vectors are mirror averages (what the index recorded wins; so does
        its precision, `embedding_precision`)."""
        if not self.model_bound:
            with self.db.conn:
                self.db.execute("BEGIN IMMEDIATE")
                for k, v in (("model", name), ("dim", dim), ("distance", distance), ("weights_sha256", checksum),
                             ("mirror_average", int(mirror_average)), ("precision", precision)):
                    self.db.execute("insert or replace into meta (key, value) values (?, ?)", [k, str(v)])
            return mirror_average
        self.check_model(name, checksum)
        return self.meta("mirror_average", "0") == "1"

    def check_model(self, name: str, checksum: str) -> None:
        """Raise ModelMismatch if the index has settled on another model or other weights."""
        current = self.meta("model")
        if self.model_bound and (current != name or self.meta("weights_sha256") != checksum):
            raise ModelMismatch(
                f"{self.dir} was built with model '{current}' (weights {self.meta('weights_sha256', '?')[:12]}); "
                f"it cannot take faces from '{name}' (weights {checksum[:12]}). Use another --index."
            )

    @property
    def model_bound(self) -> bool:
        """Whether the index has settled its model, and with it how its faces are embedded."""
        return self.meta("model") is not None and (self.meta("weights_sha256") is not None or self.face_count() > 0)

    @property
    def embedding_precision(self) -> str:
        """fp32, or int8 (the model's int8 graph): new faces and queries are embedded the same way.
        Indexes from before int8 graphs existed hold fp32 vectors."""
        return self.meta("precision", "fp32")

    # --- runs ---------------------------------------------------------------------------------
    def start_run(self, command: str, root: str, model: str) -> int:
        # A run still marked running was killed: say so (its committed chunks stay).
        self.db.execute("update runs set status = 'interrupted' where status = 'running'")
        return self.db["runs"].insert({"started_at": time.time(), "command": command, "root": root, "model": model,
                                       "status": "running"}).last_pk

    def finish_run(self, run_id: int, status: str, **counts) -> None:
        self.db["runs"].update(run_id, {"finished_at": time.time(), "status": status, **counts})

    # --- images and faces ----------------------------------------------------------------------
    def known_images(self, prefix: str | None = None) -> dict[str, dict]:
        sql = "select id, path, size, mtime, sha256, status from images"
        args: list = []
        if prefix is not None:
            sql += " where path = ? or path like ? escape '\\'"
            like = prefix.rstrip(os.sep).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args = [prefix, like + os.sep + "%"]
        return {r["path"]: r for r in self.db.query(sql, args)}

    def write_batch(self, images: list[dict], faces: list[list[FaceRecord]], model: str, run_id: int,
                    identity_sha256: str | None = None) -> None:
        """Replace these images and their faces in one transaction: a kill leaves all or nothing.
        Faces that carry an identity descriptor (videos) store it too, when it comes from the weights
        the index's descriptors come from (identity_sha256)."""
        now = time.time()
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            generation = self._bump()
            paths = [image["path"] for image in images]
            for start in range(0, len(paths), 500):  # SQLite caps the number of parameters
                part = paths[start:start + 500]
                old = self.db.execute(f"select id from images where path in ({','.join('?' * len(part))})", part)
                for (image_id,) in old.fetchall():
                    self._delete_image(image_id, generation)
            columns = ("path", "size", "mtime", "sha256", "width", "height", "status", "error")
            face_rows = []
            for image, image_faces in zip(images, faces):
                # Plain executes: at hundreds of faces a second, sqlite-utils' per-row work shows.
                image_id = self.db.execute(
                    "insert into images (path, size, mtime, sha256, width, height, status, error, faces, run_id, "
                    "indexed_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [image[c] for c in columns] + [len(image_faces), run_id, now]).lastrowid
                face_rows += [(image_id, f.face_index, *f.box, f.probability,
                               json.dumps(f.landmarks) if f.landmarks is not None else None,
                               np.asarray(f.embedding, np.float32).tobytes(), model, run_id, generation, f.time,
                               *(f.run or (None, None)))
                              for f in image_faces]
            self.db.conn.executemany(
                "insert into faces (image_id, face_index, x1, y1, x2, y2, probability, landmarks, embedding, model, "
                "run_id, generation, time, run_start, run_end) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                face_rows)
            described = [(np.asarray(f.identity, np.float16).tobytes(), row[0], f.face_index)
                         for row, f in zip(face_rows, (f for fs in faces for f in fs)) if f.identity is not None]
            if described and identity_sha256:
                current = self.meta("identity_sha256")
                if current is None:
                    self.db.execute("insert into meta (key, value) values ('identity_sha256', ?)", [identity_sha256])
                if current in (None, identity_sha256):
                    self.db.conn.executemany("insert or replace into identities (face_id, descriptor) select id, ? "
                                             "from faces where image_id = ? and face_index = ?", described)

    def touch_image(self, image_id: int, mtime: float) -> None:
        self.db["images"].update(image_id, {"mtime": mtime})

    def remove_images(self, image_ids: list[int]) -> None:
        if not image_ids:
            return
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            generation = self._bump()
            for image_id in image_ids:
                self._delete_image(image_id, generation)

    def _delete_image(self, image_id: int, generation: int) -> None:
        self.db.execute("insert into removed_faces (face_id, generation) select id, ? from faces where image_id = ?",
                        [generation, image_id])
        for table in ("labels", "identities", "face_people"):
            self.db.execute(f"delete from {table} where face_id in (select id from faces where image_id = ?)",
                            [image_id])
        self.db.execute("delete from faces where image_id = ?", [image_id])
        self.db.execute("delete from images where id = ?", [image_id])

    def _bump(self) -> int:
        """The next generation, inside the caller's transaction."""
        self.db.execute("update meta set value = cast(value as integer) + 1 where key = 'generation'")
        return self.generation

    # --- reading ---------------------------------------------------------------------------------
    def face_count(self) -> int:
        return self.db.execute("select count(*) from faces").fetchone()[0]

    def counts(self) -> dict:
        q = self.db.execute
        return {
            "images": q("select count(*) from images where status = 'ok'").fetchone()[0],
            "skipped": q("select count(*) from images where status = 'skipped'").fetchone()[0],
            "faces": self.face_count(),
            "runs": q("select count(*) from runs").fetchone()[0],
            "identities": (q("select count(*) from identities where descriptor is not null").fetchone()[0]
                           if self.has_identity_tables() else 0),
            "people": q("select count(*) from people").fetchone()[0] if self.has_identity_tables() else 0,
        }

    def _time_columns(self) -> str:
        """The video columns of faces, or NULLs for an index from before them opened read-only."""
        if not hasattr(self, "_has_time"):
            have = {row[1] for row in self.db.execute("pragma table_info(faces)").fetchall()}
            self._has_time = "time" in have
        return "time, run_start, run_end" if self._has_time else "null as time, null as run_start, null as run_end"

    def faces_by_id(self, face_ids) -> dict[int, dict]:
        face_ids = [int(i) for i in face_ids]
        if not face_ids:
            return {}
        marks = ",".join("?" * len(face_ids))
        rows = self.db.query(
            f"select faces.id, faces.image_id, faces.face_index, x1, y1, x2, y2, probability, landmarks, "
            f"embedding, {self._time_columns()}, images.path from faces join images on images.id = faces.image_id "
            f"where faces.id in ({marks})", face_ids)
        return {r["id"]: r for r in rows}

    def faces_of_file(self, path: str, size: int, mtime: float) -> list[dict] | None:
        """The stored faces of an indexed file that is unchanged since (same path, size and mtime: the
        rule `index` skips files by), in face_index order; None when the file is not indexed as it is."""
        rows = list(self.db.query("select id from images where path = ? and size = ? and mtime = ? and status = 'ok'",
                                  [path, size, mtime]))
        if not rows:
            return None
        return list(self.db.query(
            f"select faces.id, faces.face_index, x1, y1, x2, y2, probability, landmarks, embedding, "
            f"{self._time_columns()} from faces where image_id = ? order by face_index", [rows[0]["id"]]))

    def iter_faces(self, page: int = 10_000):
        """Every face in id order, with its image's path, read a page at a time."""
        last = -1
        while True:
            rows = list(self.db.query(
                "select faces.id, faces.image_id, faces.face_index, x1, y1, x2, y2, probability, landmarks, "
                f"embedding, {self._time_columns()}, images.path from faces join images on images.id = faces.image_id "
                "where faces.id > ? order by faces.id limit ?", [last, page]))
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1]["id"]

    def set_labels(self, labels: dict[str, str], source: str, by_name: bool = False) -> int:
        """Label every face of the images at these paths (or, by_name, with these file names);
        returns how many faces were labelled."""
        count = 0
        images = {}
        for image_id, path in self.db.execute("select id, path from images where status = 'ok'"):
            images.setdefault(os.path.basename(path) if by_name else path, []).append(image_id)
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            for key, label in labels.items():
                ids = images.get(key, [])
                rows = self.db.execute(f"select id from faces where image_id in ({','.join('?' * len(ids))})",
                                       ids).fetchall() if ids else []
                for (face_id,) in rows:
                    self.db.execute("insert or replace into labels (face_id, label, source) values (?, ?, ?)",
                                    [face_id, label, source])
                    count += 1
        return count

    def labels(self) -> dict[int, str]:
        return dict(self.db.execute("select face_id, label from labels").fetchall())

    def skipped_images(self) -> list[dict]:
        return list(self.db.query("select path, error from images where status = 'skipped' order by path"))

    def close(self) -> None:
        self.db.conn.close()
