"""The index as the server sees it: thread-safe searches that follow an indexer's writes."""
from __future__ import annotations

import io
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.exceptions import HTTPException

from fecsearch.faces.detect import DetectorConfig, largest_face
from fecsearch.faces.images import BadImage, decode_image, original_size
from fecsearch.query.search import Searcher, nearest_among, nearest_faces
from fecsearch.query.sheets import face_thumbnail
from fecsearch.store.database import FaceStore
from fecsearch.vectors.faiss_index import VectorIndex, index_report

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


# Uploads are refused past this many pixels before decoding (a phone photo is ~12M): a small file
# whose header promises a huge picture is a decompression bomb.
MAX_UPLOAD_PIXELS = 40_000_000


UPLOAD_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}


MAX_K = 100


SUMMARY_SAMPLE = 5000  # agglomerative clustering is quadratic in memory: cluster a sample


class Library:
    """The index as the server sees it: thread-safe searches that follow an indexer's writes."""

    def __init__(self, index_dir: str | Path, device: str | None = None, detector_config: DetectorConfig | None = None,
                 refresh_seconds: float = 1.0, inference_slots: int = 1, runtime: str = "auto",
                 threads: int | None = None):
        self.index_dir = Path(index_dir)
        self.searcher = Searcher(index_dir, device=device, detector_config=detector_config, save_index=False,
                                 runtime=runtime, threads=threads)
        self.compute = threading.BoundedSemaphore(inference_slots)
        self.refresh_lock = threading.Lock()
        self.refresh_seconds = refresh_seconds
        self._checked = time.monotonic()
        self._local = threading.local()
        self._thumbnails: OrderedDict = OrderedDict()
        self._thumbnail_lock = threading.Lock()
        self._summaries: dict = {}
        for cropped in (False, True):  # built now, not by the first requests at once
            self.searcher.pipeline(cropped)

    def store(self) -> FaceStore:
        """This thread's connection: sqlite3 connections cannot cross threads."""
        if not hasattr(self._local, "store"):
            self._local.store = FaceStore(self.index_dir, readonly=True)
        return self._local.store

    def vectors(self) -> VectorIndex:
        """The FAISS index, rebuilt from the database when an indexer has changed it (checked at
        most once per refresh_seconds, so a busy server does not rebuild for every request)."""
        if time.monotonic() - self._checked >= self.refresh_seconds:
            with self.refresh_lock:
                if time.monotonic() - self._checked >= self.refresh_seconds:
                    store = self.store()
                    if store.generation != self.searcher.index.generation:
                        self.searcher.index = VectorIndex.open(store, save=False)
                    self._checked = time.monotonic()
        return self.searcher.index

    def neighbours(self, vector: np.ndarray, k: int, person: str | None = None) -> list[dict]:
        """The k nearest faces (person: only that person's, by id or name) as the API shows them."""
        if person:
            store = self.store()
            found = store.find_person(person)
            if found is None:
                raise HTTPException(404, f"no person '{person}' in this index (GET /api/people lists them)")
            results = nearest_among(self.vectors(), store, vector, k, store.person_faces(found["id"]))
        else:
            results = nearest_faces(self.vectors(), self.store(), vector, k)
        return [dict(r.to_dict(), path=self.public_path(r.path), thumbnail=f"/api/faces/{r.face_id}/thumbnail")
                for r in results]

    def people(self) -> dict:
        """Who `fecsearch people` found: id, name, faces, and a face of theirs to show."""
        store = self.store()
        listed = []
        for p in store.people():
            first = store.person_faces(p["id"])[0]
            listed.append({"id": p["id"], "name": p["name"], "faces": p["faces"],
                           "thumbnail": f"/api/faces/{first}/thumbnail"})
        return {"people": listed}

    def public_path(self, path: str) -> str:
        """A file's path relative to the folder it was indexed from: the API does not show where
        the server's files live (its callers only need to tell pictures apart)."""
        roots = [r for (r,) in self.store().db.execute("select distinct root from runs") if r]
        for root in sorted(roots, key=len, reverse=True):
            if path == root:
                return os.path.basename(path)
            if path.startswith(root.rstrip(os.sep) + os.sep):
                return os.path.relpath(path, root)
        return os.path.basename(path)

    def search_upload(self, data: bytes, filename: str, k: int, face: int | None, all_faces: bool,
                      cropped: bool = False, person: str | None = None) -> dict:
        image = decode_upload(data, filename)
        with self.compute:
            pipeline = self.searcher.pipeline(cropped)
            faces = pipeline.find_faces([image])[0]
            vectors = pipeline.embed(faces)
        if faces and face is None:
            face = largest_face(faces)
        if face is not None and not 0 <= face < max(1, len(faces)):
            raise HTTPException(400, f"{filename}: has {len(faces)} face(s); face takes 0 to {len(faces) - 1}")
        listed = []
        for i, f in enumerate(faces):
            entry = {"face": i, "box": [round(v, 1) for v in f.box], "probability": round(f.probability, 4)}
            if all_faces:
                entry["results"] = self.neighbours(vectors[i], k, person)
            listed.append(entry)
        results = (listed[face]["results"] if all_faces else self.neighbours(vectors[face], k, person)) if faces else []
        width, height = original_size(image)
        return {"width": width, "height": height, "faces": listed, "face": face if faces else None,
                "results": results}

    def face_row(self, face_id: int) -> dict:
        row = self.store().faces_by_id([face_id]).get(face_id)
        if row is None:
            raise HTTPException(404, f"face {face_id} is not in this index")
        return row

    def search_face(self, face_id: int, k: int, person: str | None = None) -> dict:
        row = self.face_row(face_id)
        vector = np.frombuffer(row["embedding"], dtype=np.float32)
        return {"face_id": face_id, "path": self.public_path(row["path"]),
                "results": self.neighbours(vector, k, person)}

    def thumbnail(self, face_id: int, size: int) -> bytes:
        row = self.face_row(face_id)
        box = (row["x1"], row["y1"], row["x2"], row["y2"])
        # Keyed by what the picture shows: a face id can be reused after its image was re-indexed.
        key = (face_id, size, row["path"], box)
        with self._thumbnail_lock:
            if key in self._thumbnails:
                self._thumbnails.move_to_end(key)
                return self._thumbnails[key]
        try:
            picture = face_thumbnail(row["path"], box, size=size, time=row.get("time"))
        except BadImage as err:
            raise HTTPException(404, f"face {face_id}: its image can no longer be read ({err})") from None
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=88)
        data = buffer.getvalue()
        with self._thumbnail_lock:
            self._thumbnails[key] = data
            while len(self._thumbnails) > 4096:
                self._thumbnails.popitem(last=False)
        return data

    def info(self) -> dict:
        return {"index": str(self.index_dir.resolve()), **index_report(self.store(), self.vectors())}

    def summary(self, n: int) -> dict:
        from fecsearch.query.summary import summarize

        store = self.store()
        generation = store.generation
        if (generation, n) not in self._summaries:
            _, ids, vectors = store.snapshot()
            if len(ids) > SUMMARY_SAMPLE:
                keep = np.sort(np.random.default_rng(0).choice(len(ids), SUMMARY_SAMPLE, replace=False))
                ids, vectors = ids[keep], vectors[keep]
            groups = summarize(vectors, n) if len(ids) else []
            clusters = [{"face_id": int(ids[g["representative"]]), "size": len(g["members"]),
                         "thumbnail": f"/api/faces/{int(ids[g['representative']])}/thumbnail"} for g in groups]
            self._summaries = {(generation, n): {"faces": int(len(ids)), "clusters": clusters}}
        return self._summaries[(generation, n)]


def decode_upload(data: bytes, filename: str) -> Image.Image:
    """The uploaded bytes as an RGB picture; HTTP 400 naming the reason when they are not one."""
    if not data:
        raise HTTPException(400, f"{filename}: the upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
    except Image.DecompressionBombError:
        kind = None  # decode_image says why it is refused
    except Exception:
        raise HTTPException(400, f"{filename}: not a recognised image format") from None
    if kind is not None and kind not in UPLOAD_FORMATS:
        raise HTTPException(400, f"{filename}: {kind} images are not accepted; send JPEG, PNG, WebP, BMP, GIF or TIFF")
    try:
        return decode_image(data, filename, max_pixels=MAX_UPLOAD_PIXELS)
    except BadImage as err:
        raise HTTPException(400, str(err)) from None
