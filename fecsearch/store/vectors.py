"""Reading the stored vectors: all of them, a chunk at a time, or what changed since a generation
(for the FAISS index that follows the database, vectors/faiss_index.py)."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from fecsearch.store import DB_NAME, IndexUnusable


class VectorReads:
    """FaceStore's reads of face ids and embeddings (self.db, self.meta, self.generation)."""

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """All face ids and embeddings, in id order."""
        chunks = list(self.embedding_chunks())
        if not chunks:
            return np.zeros(0, np.int64), np.zeros((0, int(self.meta("dim", "0") or 0)), np.float32)
        return np.concatenate([ids for ids, _ in chunks]), np.concatenate([v for _, v in chunks])

    @contextmanager
    def read_transaction(self):
        """Reads inside it see one generation of the database, even while an indexer commits (WAL)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def embedding_chunks(self, rows: int = 1_000_000):
        """Every face id and embedding in id order, `rows` at a time: for collections whose vectors need
        not fit in memory at once (the on-disk IVF lists). Inside read_transaction() they all belong to
        one generation."""
        dim = int(self.meta("dim", "0") or 0)
        last = -1
        while True:
            page = self.db.execute("select id, embedding from faces where id > ? order by id limit ?",
                                   [last, rows]).fetchall()
            if not page:
                return
            for face_id, blob in page:
                if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                    raise IndexUnusable(
                        f"{self.dir / DB_NAME}: face {face_id}'s embedding is not {dim} float32 values; the "
                        f"database is damaged. `fecsearch info --check --index {self.dir}` lists every such face, "
                        f"and `fecsearch index` re-embeds their images.")
            last = page[-1][0]
            yield (np.array([i for i, _ in page], np.int64),
                   np.frombuffer(b"".join(blob for _, blob in page), np.float32).reshape(len(page), dim))

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray]:
        """The generation and all embeddings, read in one transaction: they always belong together,
        even while an indexer commits chunks."""
        self.db.execute("BEGIN")
        try:
            return self.generation, *self.embeddings()
        finally:
            self.db.execute("COMMIT")

    def changes_since(self, generation: int) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
        """What changed after `generation`, read in one transaction: (generation now, faces now, ids
        removed, ids added, their embeddings). A face replaced in between is in both lists; apply
        removals first."""
        dim = int(self.meta("dim", "0") or 0)
        self.db.execute("BEGIN")
        try:
            now, count = self.generation, self.face_count()
            removed = [r[0] for r in self.db.execute(
                "select face_id from removed_faces where generation > ?", [generation])]
            # no ORDER BY: SQLite would walk all faces in id order rather than use the generation index
            added = sorted(self.db.execute("select id, embedding from faces where generation > ?",
                                           [generation]).fetchall())
        finally:
            self.db.execute("COMMIT")
        if any(not isinstance(blob, bytes) or len(blob) != 4 * dim for _, blob in added):
            raise IndexUnusable(f"{self.dir / DB_NAME}: some new faces' embeddings are not {dim} float32 values; "
                                f"`fecsearch info --check --index {self.dir}` lists them")
        ids = np.array([i for i, _ in added], np.int64)
        vectors = (np.frombuffer(b"".join(blob for _, blob in added), np.float32).reshape(len(added), dim)
                   if added else np.zeros((0, dim), np.float32))
        return now, count, np.array(removed, np.int64), ids, vectors
