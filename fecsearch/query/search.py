"""`fecsearch query`: the faces of an index whose expression is nearest to a query face."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from fecsearch.faces.align import FoundFace
from fecsearch.faces.detect import DetectorConfig, largest_face
from fecsearch.store.database import FaceStore, ModelMismatch
from fecsearch.vectors.faiss_index import VectorIndex, index_report


def load_index_model(store: FaceStore, device: str | None = None, runtime: str = "auto", threads: int | None = None):
    """The network an index was built with (models.inference.load_inference), checked against the
    weights it recorded, and the model's name."""
    from fecsearch.models.config import weights_checksum
    from fecsearch.models.inference import load_inference

    name = index_model_name(store)
    checkpoint = store.meta("checkpoint") or None
    checksum = weights_checksum(name, checkpoint)
    if checksum != store.meta("weights_sha256"):
        raise ModelMismatch(f"{store.dir}: the weights of model '{name}' changed since this index was built; "
                            f"rebuild it with `fecsearch index --index {store.dir} ...` into a new folder")
    # Queries are embedded as the index's faces were: with or without the mirror average, in its precision.
    network = load_inference(name, checkpoint, device, runtime, mirror_average=store.meta("mirror_average", "0") == "1",
                             threads=threads, weights_sha256=checksum, precision=store.embedding_precision)
    return network, name


def index_model_name(store: FaceStore) -> str:
    name = store.meta("model")
    if name is None:
        raise ValueError(f"{store.dir}: the index holds no faces yet; run `fecsearch index` first")
    return name


@dataclass
class QueryFace:
    face: FoundFace
    vector: np.ndarray
    source: str  # the image's path
    face_number: int | None  # None: the largest face, found without looking for much smaller ones
    faces_found: int | None  # (FaceDetector.detect_largest); `fecsearch embed` lists every face
    face_id: int | None = None  # the face's id when it is in the index (a query by id, or an indexed file)
    identity: np.ndarray | None = None  # who the face is (models/identity.py), when asked for


@dataclass
class IndexedFace:
    face_id: int
    path: str
    face_index: int  # which face of its image, left to right
    box: tuple[float, float, float, float]
    probability: float
    embedding: np.ndarray


@dataclass
class Result:
    rank: int
    distance: float
    face_id: int
    path: str
    box: tuple[float, float, float, float]
    time: float | None = None  # a video's face: seconds into the video
    run: tuple[float, float] | None = None  # and the span of frames it stands for

    def to_dict(self) -> dict:
        out = {"rank": self.rank, "distance": round(self.distance, 6), "face_id": self.face_id, "path": self.path,
               "box": [round(v, 1) for v in self.box]}
        if self.time is not None:
            out["time"] = round(self.time, 3)
            out["run"] = [round(v, 3) for v in self.run] if self.run else None
        return out

    @classmethod
    def of_row(cls, rank: int, distance: float, row: dict) -> "Result":
        run = (row["run_start"], row["run_end"]) if row.get("run_start") is not None else None
        return cls(rank, distance, row["id"], row["path"], (row["x1"], row["y1"], row["x2"], row["y2"]),
                   row.get("time"), run)


class Searcher:
    """An index opened for searching: the model and the FAISS index stay loaded, so many queries pay
    for one start-up. Opened read-only; `fecsearch.open_index` is the public way to get one.

    >>> index = fecsearch.open_index("indexes/default")
    >>> index.search_image("smile.jpg", k=5)       # by the largest face of a photo
    >>> index.search_face(42)                      # by a face already in the index
    >>> index.search_vector(vector)                # by an embedding
    >>> for face in index.faces(): ...             # every face, with its path, box and embedding
    """

    def __init__(self, index_dir: str | Path, device: str | None = None, detector_config: DetectorConfig | None = None,
                 save_index: bool = True, runtime: str = "auto", threads: int | None = None):
        self.store = FaceStore(index_dir, readonly=True)
        self.device = device  # None: CUDA when there is one
        self.runtime = runtime  # "auto", "onnx" or "torch" (models.inference.load_inference)
        self.threads = threads  # ONNX Runtime's threads per network (None: every core)
        self.model_name = index_model_name(self.store)
        self._model = None  # loaded by the first query that needs it: searches by id or vector never do
        self.detector_config = detector_config
        self._pipelines: dict = {}
        self._identities = self._identity_network = None  # loaded by the first search that needs them
        # save_index=False: a stale FAISS file is rebuilt in memory only (a server must not race an indexer)
        self.index = VectorIndex.open(self.store, save=save_index)

    @property
    def model(self):
        """The index's network (ONNX Runtime or torch, models.inference), loaded on first use."""
        if self._model is None:
            self._model, _ = load_index_model(self.store, self.device, self.runtime, self.threads)
            self.device = self._model.device
        return self._model

    def pipeline(self, cropped: bool):
        """The detect-align-embed pipeline (models.pipeline.FacePipeline) for photos or for crops."""
        from fecsearch.models.pipeline import FacePipeline

        if cropped not in self._pipelines:
            network = self.model  # settles self.device
            self._pipelines[cropped] = FacePipeline(network, cropped, self.detector_config, device=self.device,
                                                    runtime=network.runtime, threads=self.threads)
        return self._pipelines[cropped]

    def query_image(self, image_path: str | Path, face: int | None = None, cropped: bool = False,
                    identity: bool = False) -> QueryFace:
        """A face of an image (face: its number from the left; None: the largest) and its vector;
        identity=True also describes who it is (for other_people).

        A file the index holds, unchanged since it was indexed, is not detected again: its stored
        faces answer, so the photo finds its own face at distance 0 (QueryFace.face_id says which)."""
        from fecsearch.faces.video import is_video

        if is_video(image_path):
            raise LookupError(f"{image_path}: a video, not a picture; `fecsearch moments {image_path} --like "
                              f"IMAGE` searches within it")
        if not cropped and self.detector_config is None:
            stored = self._stored_faces(image_path)
            if stored:
                number = largest_face([f for f, _, _ in stored]) if face is None else face
                self._check_number(image_path, number, len(stored))
                found, vector, face_id = stored[number]
                q = QueryFace(found, vector, str(image_path), number, len(stored), face_id)
                if identity:
                    q.identity = self.stored_identity(face_id)
                if not identity or q.identity is not None:
                    return q
        from fecsearch.faces.images import load_image  # here: a search by id or vector never loads Pillow

        image = load_image(image_path)
        found, number, count = self.pipeline(cropped).face_of(image, face)
        if count == 0:
            raise LookupError(f"{image_path}: no face found")
        if count is not None:
            self._check_number(image_path, number, count)
        vector = self.pipeline(cropped).embed([found])[0]
        q = QueryFace(found, vector, str(image_path), number, count)
        if identity:
            from fecsearch.faces.images import original_scale
            from fecsearch.models.identity import identity_crop

            crop = identity_crop(image, None if cropped else found.landmarks, original_scale(image))
            q.identity = self.identity_network.describe([crop])[0]
        return q

    @staticmethod
    def _check_number(image_path, number: int, count: int) -> None:
        if not 0 <= number < count:
            raise LookupError(f"{image_path}: has {count} face(s); --face takes 0 to {count - 1}")

    def _stored_faces(self, image_path: str | Path) -> list | None:
        """The indexed faces of this file, if the index holds it unchanged: [(FoundFace, vector, face_id)]."""
        import os

        try:
            st = os.stat(image_path)
        except OSError:
            return None  # load_image says why in one sentence
        rows = self.store.faces_of_file(os.path.abspath(image_path), st.st_size, st.st_mtime)
        if not rows:
            return None
        out = []
        for row in rows:
            box = (row["x1"], row["y1"], row["x2"], row["y2"])
            marks = np.asarray(json.loads(row["landmarks"])) if row["landmarks"] else None
            out.append((FoundFace(box, row["probability"], marks, None),
                        np.frombuffer(row["embedding"], dtype=np.float32), row["id"]))
        return out

    def query_face_id(self, face_id: int, identity: bool = False) -> QueryFace:
        rows = self.store.faces_by_id([face_id])
        if face_id not in rows:
            raise LookupError(f"face {face_id} is not in {self.store.dir}")
        row = rows[face_id]
        vector = np.frombuffer(row["embedding"], dtype=np.float32)
        box = (row["x1"], row["y1"], row["x2"], row["y2"])
        # The vector is stored: the photo is not read (a sheet draws the face from its path and box).
        return QueryFace(FoundFace(box, row["probability"], None, None), vector, row["path"], row["face_index"], 1,
                         face_id, self.stored_identity(face_id) if identity else None)

    def search(self, vector: np.ndarray, k: int = 10, person: str | int | None = None,
               exclude=None, within=None) -> list[Result]:
        """The k faces nearest to `vector`; person (an id or a name, `fecsearch people`): only that
        person's faces; within: only these face ids (e.g. one video's, faces_of_file); exclude: face
        ids to leave out (other_people gives the query's own)."""
        if person is None and within is None:
            return nearest_faces(self.index, self.store, vector, k, exclude)
        face_ids = set(int(i) for i in within) if within is not None else None
        if person is not None:
            theirs = set(self.store.person_faces(self.find_person(person)["id"]))
            face_ids = theirs if face_ids is None else face_ids & theirs
        if exclude is not None:
            face_ids -= set(int(i) for i in exclude)
        return nearest_among(self.index, self.store, vector, k, face_ids)

    def faces_of_file(self, path: str | Path) -> list[int]:
        """The ids of the faces the index holds for one file (a photo, or every kept face of a video)."""
        import os

        rows = self.store.db.execute("select faces.id from faces join images on images.id = faces.image_id "
                                     "where images.path = ? order by faces.id", [os.path.abspath(path)]).fetchall()
        return [r[0] for r in rows]

    # --- who the faces are ----------------------------------------------------------------------
    def _require_identities(self) -> None:
        if not self.store.has_identity_tables() or not len(self.identities):
            raise LookupError(f"{self.store.dir} has no identity descriptors yet; run `fecsearch people --index "
                              f"{self.store.dir}` (it describes every face once, without detecting them again)")

    @property
    def identities(self):
        """The index's identity descriptors in FAISS (people.cluster.IdentityIndex), built on first use."""
        if self._identities is None:
            from fecsearch.people.cluster import IdentityIndex

            self._identities = IdentityIndex(self.store)
        return self._identities

    @property
    def identity_network(self):
        if self._identity_network is None:
            from fecsearch.models.identity import IdentityNetwork

            self._identity_network = IdentityNetwork(self.device, self.runtime, self.threads)
        return self._identity_network

    def stored_identity(self, face_id: int) -> np.ndarray | None:
        ids, descriptors = self.store.identities([face_id])
        return descriptors[0] if len(ids) else None

    def find_person(self, person: str | int) -> dict:
        """A person by id or name, or LookupError saying how to see who there is."""
        self._require_identities()
        found = self.store.find_person(str(person))
        if found is None:
            raise LookupError(f"no person '{person}' in {self.store.dir}; `fecsearch people --index "
                              f"{self.store.dir}` lists them")
        return found

    def other_people(self, q: QueryFace) -> set[int]:
        """The faces of the query face's own identity, which a search for other people leaves out:
        the people (`fecsearch people`) of every face as alike as clustering asks (SAME_PERSON), the
        query's own person if it is an indexed face, and every face whose descriptor is merely close
        (SAME_PERSON_LOOSE: a stranger left out costs one result, the query's subject kept in
        defeats the filter)."""
        from fecsearch.people.cluster import SAME_PERSON, SAME_PERSON_LOOSE

        self._require_identities()
        if q.identity is None:
            raise LookupError(f"face {q.face_id} has no identity descriptor yet; run `fecsearch people --index "
                              f"{self.store.dir}`")
        close, cosines = self.identities.same_person(q.identity, SAME_PERSON_LOOSE, with_cosines=True)
        own = set(close.tolist()) | ({q.face_id} if q.face_id is not None else set())
        person_of = self.store.face_people()
        people = {person_of[f] for f, c in zip(close.tolist(), cosines) if c >= SAME_PERSON and f in person_of}
        if q.face_id in person_of:
            people.add(person_of[q.face_id])
        for person in people:
            own.update(self.store.person_faces(person))
        return own

    def search_image(self, image_path: str | Path, k: int = 10, face: int | None = None,
                     cropped: bool = False) -> list[Result]:
        """The k faces nearest in expression to a face of the image (default: its largest)."""
        return self.search(self.query_image(image_path, face, cropped).vector, k)

    def search_face(self, face_id: int, k: int = 10) -> list[Result]:
        """The k faces nearest to one already in the index (the first result is that face itself)."""
        return self.search(self.query_face_id(face_id).vector, k)

    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[Result]:
        """The k faces nearest to an embedding of this index's model (index.model_name)."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        dim = int(self.store.meta("dim", "0") or 0)
        if vector.shape[0] != dim:
            raise ValueError(f"the index holds {dim}-d vectors of model "
                             f"'{self.model_name}', not {vector.shape[0]}-d ones")
        return self.search(vector, k)

    def faces(self) -> Iterator[IndexedFace]:
        """Every face of the index, in id order."""
        for row in self.store.iter_faces():
            yield IndexedFace(row["id"], row["path"], row["face_index"], (row["x1"], row["y1"], row["x2"], row["y2"]),
                              row["probability"], np.frombuffer(row["embedding"], dtype=np.float32))

    def classify(self, vector: np.ndarray, k: int = 200) -> tuple[dict[str, float], int]:
        """K-NN emotion (the paper's Table 4): each label's share among the k nearest labelled faces,
        and how many labelled neighbours were found. Labels come from `fecsearch label`."""
        labels = self.store.labels()
        if not labels:
            raise LookupError(f"{self.store.dir} has no labels; add some with `fecsearch label`")
        # Search deeper than k so that k labelled neighbours are found when some faces have no label.
        hits = self.index.search(vector, min(len(self.index), k * 4))
        votes = [labels[h.face_id] for h in hits if h.face_id in labels][:k]
        return {n: votes.count(n) / max(1, len(votes)) for n in sorted(set(labels.values()))}, len(votes)

    def info(self) -> dict:
        return {"index": str(self.store.dir), **index_report(self.store, self.index)}


def nearest_faces(index: VectorIndex, store: FaceStore, vector: np.ndarray, k: int, exclude=None) -> list[Result]:
    """The k nearest faces with their records; faces deleted since `index` was read are left out."""
    hits = index.search(vector, k, exclude)
    rows = store.faces_by_id([h.face_id for h in hits])
    results = []
    for hit in hits:
        row = rows.get(hit.face_id)
        if row is None:
            continue
        results.append(Result.of_row(len(results) + 1, hit.distance, row))
    return results


def nearest_among(index: VectorIndex, store: FaceStore, vector: np.ndarray, k: int, face_ids) -> list[Result]:
    """The k nearest of the given faces, searched exactly over their stored vectors (one person's
    faces, one video's): an IVF index could miss some of a few."""
    face_ids = sorted(int(i) for i in face_ids)
    rows = store.faces_by_id(face_ids)
    face_ids = [i for i in face_ids if i in rows]
    vectors = (np.stack([np.frombuffer(rows[i]["embedding"], np.float32) for i in face_ids]) if face_ids
               else np.zeros((0, len(vector)), np.float32))
    hits = index.search_among(vector, k, np.array(face_ids, np.int64), vectors)
    return [Result.of_row(n, h.distance, rows[h.face_id]) for n, h in enumerate(hits, 1)]
