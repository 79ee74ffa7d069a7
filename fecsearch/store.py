"""The SQLite database: the source of truth for what an index holds.

Tables (open the file with sqlite3 or datasette):
  meta    key/value: schema version, model name, embedding size, distance, weights checksum, generation
  runs    one row per `fecsearch index` run: when, what, counts, status
  images  one row per file seen: path, size, mtime, sha256, status ok|skipped, error, face count
  faces   one row per face: image, box, landmarks, detection probability, embedding (float32 bytes)
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

SCHEMA_VERSION = 1
DB_NAME = "faces.db"


class ModelMismatch(ValueError):
    pass


@dataclass
class FaceRecord:
    image_id: int
    face_index: int
    box: tuple[float, float, float, float]
    probability: float
    landmarks: list | None
    embedding: np.ndarray


class FaceStore:
    def __init__(self, index_dir: str | os.PathLike, create: bool = True):
        self.dir = Path(index_dir)
        if not create and not (self.dir / DB_NAME).exists():
            raise FileNotFoundError(f"{self.dir}: no fecsearch index here (no {DB_NAME}); build one with `fecsearch index`")
        self.dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.dir / DB_NAME, timeout=60, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        # WAL: readers (queries, a server) never see half a batch and never block the indexer.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._create_tables()

    def _create_tables(self) -> None:
        db = self.db
        if "meta" not in db.table_names():
            db["meta"].create({"key": str, "value": str}, pk="key")
            db["meta"].insert({"key": "schema_version", "value": str(SCHEMA_VERSION)})
            db["meta"].insert({"key": "generation", "value": "0"})
        if "runs" not in db.table_names():
            db["runs"].create({"id": int, "started_at": float, "finished_at": float, "command": str, "root": str,
                               "model": str, "images_added": int, "images_removed": int, "faces_added": int,
                               "skipped": int, "status": str}, pk="id")
        if "images" not in db.table_names():
            db["images"].create({"id": int, "path": str, "size": int, "mtime": float, "sha256": str,
                                 "width": int, "height": int, "status": str, "error": str, "faces": int,
                                 "run_id": int, "indexed_at": float}, pk="id",
                                foreign_keys=[("run_id", "runs", "id")])
            db["images"].create_index(["path"], unique=True)
        if "faces" not in db.table_names():
            db["faces"].create({"id": int, "image_id": int, "face_index": int, "x1": float, "y1": float,
                                "x2": float, "y2": float, "probability": float, "landmarks": str,
                                "embedding": bytes, "model": str, "run_id": int}, pk="id",
                               foreign_keys=[("image_id", "images", "id"), ("run_id", "runs", "id")])
            db["faces"].create_index(["image_id"])
        if "labels" not in db.table_names():
            db["labels"].create({"face_id": int, "label": str, "source": str}, pk="face_id",
                                foreign_keys=[("face_id", "faces", "id")])

    # --- meta -------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else default

    def set_meta(self, key: str, value) -> None:
        self.db["meta"].upsert({"key": key, "value": str(value)}, pk="key")

    @property
    def generation(self) -> int:
        """Bumped by every change to the faces: the FAISS file records the generation it was built from."""
        return int(self.meta("generation", "0"))

    def bind_model(self, name: str, dim: int, distance: str, checksum: str) -> None:
        """Record the index's model on first use; refuse another model afterwards."""
        current = self.meta("model")
        if current is None:
            for k, v in (("model", name), ("dim", dim), ("distance", distance), ("weights_sha256", checksum)):
                self.set_meta(k, v)
            return
        if current != name or self.meta("weights_sha256") != checksum:
            raise ModelMismatch(
                f"{self.dir} was built with model '{current}' (weights {self.meta('weights_sha256', '?')[:12]}); "
                f"it cannot take faces from '{name}' (weights {checksum[:12]}). Use another --index."
            )

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

    def write_batch(self, images: list[dict], faces: list[list[FaceRecord]], model: str, run_id: int) -> None:
        """Replace these images and their faces in one transaction: a kill leaves all or nothing."""
        now = time.time()
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            paths = [image["path"] for image in images]
            for start in range(0, len(paths), 500):  # SQLite caps the number of parameters
                part = paths[start:start + 500]
                old = self.db.execute(f"select id from images where path in ({','.join('?' * len(part))})", part)
                for (image_id,) in old.fetchall():
                    self._delete_image(image_id)
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
                               np.asarray(f.embedding, np.float32).tobytes(), model, run_id) for f in image_faces]
            self.db.conn.executemany(
                "insert into faces (image_id, face_index, x1, y1, x2, y2, probability, landmarks, embedding, model, "
                "run_id) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", face_rows)
            self._bump()

    def touch_image(self, image_id: int, mtime: float) -> None:
        self.db["images"].update(image_id, {"mtime": mtime})

    def remove_images(self, image_ids: list[int]) -> None:
        if not image_ids:
            return
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            for image_id in image_ids:
                self._delete_image(image_id)
            self._bump()

    def _delete_image(self, image_id: int) -> None:
        self.db.execute("delete from labels where face_id in (select id from faces where image_id = ?)", [image_id])
        self.db.execute("delete from faces where image_id = ?", [image_id])
        self.db.execute("delete from images where id = ?", [image_id])

    def _bump(self) -> None:
        self.db.execute("update meta set value = cast(value as integer) + 1 where key = 'generation'")

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
        }

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """All face ids and embeddings, in id order."""
        dim = int(self.meta("dim", "0") or 0)
        ids, vectors = [], []
        for face_id, blob in self.db.execute("select id, embedding from faces order by id"):
            ids.append(face_id)
            vectors.append(np.frombuffer(blob, dtype=np.float32))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return np.array(ids, np.int64), np.stack(vectors)

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray]:
        """The generation and all embeddings, read in one transaction: they always belong together,
        even while an indexer commits chunks."""
        self.db.execute("BEGIN")
        try:
            return self.generation, *self.embeddings()
        finally:
            self.db.execute("COMMIT")

    def faces_by_id(self, face_ids) -> dict[int, dict]:
        face_ids = [int(i) for i in face_ids]
        if not face_ids:
            return {}
        marks = ",".join("?" * len(face_ids))
        rows = self.db.query(
            f"select faces.id, faces.image_id, faces.face_index, x1, y1, x2, y2, probability, landmarks, "
            f"embedding, images.path from faces join images on images.id = faces.image_id "
            f"where faces.id in ({marks})", face_ids)
        return {r["id"]: r for r in rows}

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
