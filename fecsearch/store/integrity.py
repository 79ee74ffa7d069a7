"""Whether an index's database is sound: SQLite's own check and every stored embedding's size and
values (`fecsearch info --check`; `index` embeds again the faces whose embedding is damaged)."""
from __future__ import annotations

import sqlite3

import numpy as np


class IntegrityChecks:
    """FaceStore's checks of what is damaged (self.db, self.meta)."""

    def check(self) -> dict:
        """SQLite's integrity check and every embedding's size and values: what is damaged."""
        try:
            integrity = [row[0] for row in self.db.execute("pragma integrity_check")]
        except sqlite3.DatabaseError as err:
            integrity = [str(err)]
        invalid = self.invalid_faces()
        return {"integrity": integrity[:20], "ok": integrity == ["ok"] and not invalid, "invalid_faces": invalid}

    def malformed_faces(self) -> list[int]:
        """Images with a face whose embedding is missing or of the wrong size: one SQL scan, cheap
        enough for the start of every `index` run (which embeds them again)."""
        dim = int(self.meta("dim", "0") or 0)
        rows = self.db.execute("select distinct image_id from faces where embedding is null "
                               "or typeof(embedding) != 'blob' or length(embedding) != ?", [4 * dim])
        return [image_id for (image_id,) in rows]

    def invalid_faces(self) -> list[dict]:
        """Faces whose embedding is missing, of the wrong size, or not finite."""
        dim = int(self.meta("dim", "0") or 0)
        bad = []
        for face_id, image_id, blob in self.db.execute("select id, image_id, embedding from faces"):
            ok = isinstance(blob, bytes) and len(blob) == 4 * dim and np.isfinite(np.frombuffer(blob, np.float32)).all()
            if not ok:
                bad.append({"face_id": face_id, "image_id": image_id})
        return bad
