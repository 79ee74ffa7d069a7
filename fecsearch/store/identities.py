"""The identity tables of an index's database: who each face is (`identities`) and the people found
(`people`, `face_people`). FaceStore (store/database.py) holds them; their columns are in its
COLUMNS. An index from before them, opened read-only, reads as having none."""
from __future__ import annotations

import numpy as np

IDENTITY_TABLES = ("identities", "people", "face_people")


class IdentityTables:
    """FaceStore's methods for identities and people (self.db, self.tables, self.meta, self.dir)."""

    def has_identity_tables(self) -> bool:
        return set(IDENTITY_TABLES) <= self.tables

    def faces_without_identity(self, limit: int = 256) -> list[dict]:
        """Up to `limit` faces with no identity descriptor yet, whole images at a time, with their
        image's path and sha256 and the face's landmarks (original-photo pixels; None for crops)."""
        images = [r[0] for r in self.db.execute(
            "select distinct faces.image_id from faces left join identities on identities.face_id = faces.id "
            "where identities.face_id is null order by faces.image_id limit ?", [limit])]
        if not images:
            return []
        marks = ",".join("?" * len(images))
        return list(self.db.query(
            f"select faces.id, faces.image_id, faces.face_index, faces.landmarks, faces.time, images.path, "
            f"images.sha256 "
            f"from faces join images on images.id = faces.image_id left join identities on identities.face_id = "
            f"faces.id where identities.face_id is null and faces.image_id in ({marks}) "
            f"order by faces.image_id, faces.face_index", images))

    def missing_identities(self) -> int:
        if not self.has_identity_tables():
            return self.face_count()
        return self.db.execute("select count(*) from faces left join identities on identities.face_id = faces.id "
                               "where identities.face_id is null").fetchone()[0]

    def write_identities(self, face_ids: list[int], descriptors: np.ndarray, checksum: str,
                         empty: set[int] = frozenset()) -> None:
        """Store descriptors (float16: 2 KB a face) in one transaction, for faces still in the index;
        the faces in `empty` could not be described (their photo is gone or changed): NULL."""
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            if self.meta("identity_sha256") != checksum:  # other weights: the old descriptors go
                self.db.execute("delete from identities")
                self.db.execute("insert or replace into meta (key, value) values ('identity_sha256', ?)", [checksum])
            rows = [(int(i), None if int(i) in empty else np.asarray(d, np.float16).tobytes())
                    for i, d in zip(face_ids, descriptors)]
            self.db.conn.executemany("insert or replace into identities (face_id, descriptor) select ?, ? where "
                                     "exists (select 1 from faces where id = ?)", [(i, b, i) for i, b in rows])

    def identities(self, face_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(face ids, descriptors as float32 [n, 1024]) of every face that has one (or of `face_ids`)."""
        if not self.has_identity_tables():
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        if face_ids is None:
            rows = self.db.execute("select face_id, descriptor from identities where descriptor is not null "
                                   "order by face_id").fetchall()
        else:
            face_ids = [int(i) for i in face_ids]
            rows = []
            for start in range(0, len(face_ids), 500):
                part = face_ids[start:start + 500]
                rows += self.db.execute(f"select face_id, descriptor from identities where descriptor is not null "
                                        f"and face_id in ({','.join('?' * len(part))}) order by face_id",
                                        part).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.array([r[0] for r in rows], np.int64)
        return ids, np.frombuffer(b"".join(r[1] for r in rows), np.float16).reshape(len(rows), -1).astype(np.float32)

    def people(self) -> list[dict]:
        """Every person with their face count, most faces first: id, name, faces."""
        if not self.has_identity_tables():
            return []
        return list(self.db.query(
            "select people.id, people.name, count(face_people.face_id) as faces from people join face_people on "
            "face_people.person_id = people.id group by people.id order by faces desc, people.id"))

    def person_faces(self, person_id: int) -> list[int]:
        if not self.has_identity_tables():
            return []
        return [r[0] for r in self.db.execute("select face_id from face_people where person_id = ? order by face_id",
                                              [person_id])]

    def face_people(self) -> dict[int, int]:
        """face id -> person id, for every clustered face."""
        if not self.has_identity_tables():
            return {}
        return dict(self.db.execute("select face_id, person_id from face_people").fetchall())

    def find_person(self, key: str) -> dict | None:
        """A person by id (digits) or by name (case-insensitive)."""
        if not self.has_identity_tables():
            return None
        if str(key).isdigit():
            rows = list(self.db.query("select id, name from people where id = ?", [int(key)]))
        else:
            rows = list(self.db.query("select id, name from people where lower(name) = lower(?)", [str(key)]))
        return rows[0] if rows else None

    def set_people(self, assignment: dict[int, int]) -> None:
        """Replace who every face is (face id -> person id) in one transaction; people left without a
        face are deleted unless they have a name (a named person keeps its id for later runs)."""
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("delete from face_people")
            self.db.conn.executemany("insert or ignore into people (id) values (?)",
                                     [(p,) for p in sorted(set(assignment.values()))])
            self.db.conn.executemany("insert into face_people (face_id, person_id) values (?, ?)",
                                     sorted(assignment.items()))
            self.db.execute("delete from people where name is null and id not in "
                            "(select distinct person_id from face_people)")

    def name_person(self, person_id: int, name: str) -> None:
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            if not self.db.execute("select 1 from people where id = ?", [person_id]).fetchone():
                raise LookupError(f"no person {person_id} in {self.dir}; `fecsearch people` lists them")
            other = self.db.execute("select id from people where lower(name) = lower(?) and id != ?",
                                    [name, person_id]).fetchone()
            if other:
                raise ValueError(f"'{name}' already names person {other[0]}")
            self.db.execute("update people set name = ? where id = ?", [name, person_id])

    def named_people(self) -> dict[int, str]:
        if not self.has_identity_tables():
            return {}
        return dict(self.db.execute("select id, name from people where name is not null").fetchall())
