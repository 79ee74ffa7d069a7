"""`fecsearch serve`: the model and the index kept loaded behind an HTTP API, a search page and a
rating page for the rank-difference study's people judge.

Concurrency: requests run in a thread pool. Each thread has its own SQLite connections; at most
`inference_slots` requests run the model (MTCNN + embedding network) at once (`serve` gives one per
core with one torch thread each: two photos on two cores detect almost 2x faster than one photo on
both, benchmarks/RESULTS.md); FAISS searches and thumbnails run in parallel. An `index` run may write to the same index
meanwhile: the server checks the database's generation before searching and, when it moved,
rebuilds its vectors in memory from one read transaction, so a search sees whole chunks or none.
"""
from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .faces import DetectorConfig
from .http_guards import ContainErrors, UploadLimit, error
from .images import BadImage, decode_image, load_image, original_size
from .search import Searcher, nearest_faces
from .sheet import face_thumbnail
from .store import FaceStore
from .vector_index import VectorIndex

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Uploads are refused past this many pixels before decoding (a phone photo is ~12M): a small file
# whose header promises a huge picture is a decompression bomb.
MAX_UPLOAD_PIXELS = 40_000_000
UPLOAD_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}
MAX_K = 100
SUMMARY_SAMPLE = 5000  # agglomerative clustering is quadratic in memory: cluster a sample


class Library:
    """The index as the server sees it: thread-safe searches that follow an indexer's writes."""

    def __init__(self, index_dir: str | Path, device: str = "cpu", detector_config: DetectorConfig | None = None,
                 refresh_seconds: float = 1.0, inference_slots: int = 1):
        self.index_dir = Path(index_dir)
        self.searcher = Searcher(index_dir, device=device, detector_config=detector_config, save_index=False)
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

    def neighbours(self, vector: np.ndarray, k: int) -> list[dict]:
        return [dict(r.to_dict(), path=self.public_path(r.path), thumbnail=f"/api/faces/{r.face_id}/thumbnail")
                for r in nearest_faces(self.vectors(), self.store(), vector, k)]

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
                      cropped: bool = False) -> dict:
        image = decode_upload(data, filename)
        with self.compute:
            pipeline = self.searcher.pipeline(cropped)
            faces = pipeline.find_faces([image])[0]
            vectors = pipeline.embed(faces)
        if faces and face is None:
            face = max(range(len(faces)), key=lambda i: faces[i].area)
        if face is not None and not 0 <= face < max(1, len(faces)):
            raise HTTPException(400, f"{filename}: has {len(faces)} face(s); face takes 0 to {len(faces) - 1}")
        listed = []
        for i, f in enumerate(faces):
            entry = {"face": i, "box": [round(v, 1) for v in f.box], "probability": round(f.probability, 4)}
            if all_faces:
                entry["results"] = self.neighbours(vectors[i], k)
            listed.append(entry)
        results = (listed[face]["results"] if all_faces else self.neighbours(vectors[face], k)) if faces else []
        width, height = original_size(image)
        return {"width": width, "height": height, "faces": listed, "face": face if faces else None,
                "results": results}

    def face_row(self, face_id: int) -> dict:
        row = self.store().faces_by_id([face_id]).get(face_id)
        if row is None:
            raise HTTPException(404, f"face {face_id} is not in this index")
        return row

    def search_face(self, face_id: int, k: int) -> dict:
        row = self.face_row(face_id)
        vector = np.frombuffer(row["embedding"], dtype=np.float32)
        return {"face_id": face_id, "path": self.public_path(row["path"]), "results": self.neighbours(vector, k)}

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
            picture = face_thumbnail(row["path"], box, size=size)
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
        store = self.store()
        vectors = self.vectors()
        return {"index": str(self.index_dir.resolve()), "model": store.meta("model"), "dim": int(store.meta("dim", "0")),
                "distance": store.meta("distance"), **store.counts(), "generation": store.generation,
                "searchable_faces": len(vectors), "index_type": vectors.kind}

    def summary(self, n: int) -> dict:
        from .summarize import summarize

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


@dataclass
class RatingPair:
    number: int
    query: str
    first: str
    second: str


class Rating:
    """The rank-difference study's questions, served one by one to each named rater; answers go to
    the same VoteStore that `fecsearch bench rank-diff --judge people` reads."""

    def __init__(self, study, votes_db: str | Path):
        from .votes import VoteStore

        self.study = study
        self.votes_db = Path(votes_db)
        VoteStore(self.votes_db)  # create the table now
        self.pairs = [RatingPair(i, *p) for i, p in enumerate(study.pairs())]
        self.face_number = {name: i for i, name in enumerate(study.names)}
        self._local = threading.local()

    def votes(self):
        from .votes import VoteStore

        if not hasattr(self._local, "votes"):
            self._local.votes = VoteStore(self.votes_db)
        return self._local.votes

    @staticmethod
    def swapped(rater: str, pair: RatingPair) -> bool:
        """Show each rater a pair's faces in an order of their own, so position cannot bias the study."""
        return hashlib.sha256(f"{rater}\n{pair.number}".encode()).digest()[0] % 2 == 1

    def next_question(self, rater: str) -> dict:
        answered = self.votes().answered(rater)
        todo = [p for p in self.pairs if (p.query, *sorted((p.first, p.second))) not in answered]
        progress = {"rater": rater, "answered": len(self.pairs) - len(todo), "total": len(self.pairs)}
        if not todo:
            return {**progress, "question": None}
        pair = todo[0]
        left, right = (pair.second, pair.first) if self.swapped(rater, pair) else (pair.first, pair.second)
        url = lambda name: f"/api/rating/faces/{self.face_number[name]}"  # noqa: E731
        return {**progress, "question": {"pair": pair.number, "query": pair.query, "left": left, "right": right,
                                         "query_image": url(pair.query), "left_image": url(left),
                                         "right_image": url(right)}}

    def vote(self, rater: str, number: int, left: str, right: str, answer: str) -> None:
        if not 0 <= number < len(self.pairs):
            raise HTTPException(404, f"pair {number} is not in this study")
        pair = self.pairs[number]
        if sorted((left, right)) != sorted((pair.first, pair.second)):
            raise HTTPException(400, f"pair {number} compares {pair.first} and {pair.second}, not {left} and {right}")
        try:
            self.votes().add(pair.query, left, right, rater, answer)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

    def face_image(self, number: int) -> bytes:
        if not 0 <= number < len(self.study.paths):
            raise HTTPException(404, f"face {number} is not in this study")
        try:
            picture = load_image(self.study.paths[number])
        except BadImage as err:
            raise HTTPException(404, str(err)) from None
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        return buffer.getvalue()

    def describe(self) -> dict:
        return {"enabled": True, "data": str(self.study.data_dir), "queries": len(self.study.queries),
                "pairs": len(self.pairs), "votes": str(self.votes_db)}


def parse_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, not '{raw[:40]}'") from None
    if not low <= value <= high:
        raise HTTPException(400, f"{name} must be between {low} and {high}")
    return value


def rater_name(raw) -> str:
    if raw is not None and not isinstance(raw, str):
        raise HTTPException(400, "rater must be a name of 1 to 64 characters")
    name = (raw or "").strip()
    if not 1 <= len(name) <= 64:
        raise HTTPException(400, "rater must be a name of 1 to 64 characters")
    return name


WEB = resources.files("fecsearch") / "web"


def create_app(library: Library, rating: Rating | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Starlette:
    async def health(request):
        return JSONResponse({"status": "ok"})

    async def info(request):
        return JSONResponse(await run_in_threadpool(library.info))

    async def search_upload(request: Request):
        k = parse_int(request, "k", 10, 1, MAX_K)
        face = parse_int(request, "face", None, 0, 10_000)
        all_faces = request.query_params.get("all") in ("1", "true", "yes")
        cropped = request.query_params.get("cropped") in ("1", "true", "yes")
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=4) as form:
                upload = form.get("image")
                if upload is None or isinstance(upload, str):
                    raise HTTPException(400, "send the picture as a file in the form field 'image'")
                filename = upload.filename or "upload"
                if upload.content_type and not upload.content_type.startswith(("image/", "application/octet-stream")):
                    raise HTTPException(400, f"{filename}: {upload.content_type} is not an image type")
                data = await upload.read()
        elif content_type.startswith(("image/", "application/octet-stream")):
            filename, data = "upload", await request.body()
        else:
            raise HTTPException(400, "send an image: multipart/form-data with a field 'image', or the "
                                     "image bytes with an image/* Content-Type")
        return JSONResponse(await run_in_threadpool(library.search_upload, data, filename, k, face, all_faces,
                                                    cropped))

    async def similar(request: Request):
        k = parse_int(request, "k", 10, 1, MAX_K)
        return JSONResponse(await run_in_threadpool(library.search_face, face_id_of(request), k))

    async def face(request: Request):
        row = await run_in_threadpool(library.face_row, face_id_of(request))
        return JSONResponse({"face_id": row["id"], "path": library.public_path(row["path"]),
                             "face_index": row["face_index"],
                             "box": [row[k] for k in ("x1", "y1", "x2", "y2")], "probability": row["probability"],
                             "thumbnail": f"/api/faces/{row['id']}/thumbnail"})

    async def thumbnail(request: Request):
        size = parse_int(request, "size", 160, 16, 512)
        data = await run_in_threadpool(library.thumbnail, face_id_of(request), size)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=60"})

    async def summary(request: Request):
        n = parse_int(request, "n", 10, 1, 100)
        return JSONResponse(await run_in_threadpool(library.summary, n))

    def need_rating() -> Rating:
        if rating is None:
            raise HTTPException(404, "rating is off: start the server with --rate FOLDER (see fecsearch serve --help)")
        return rating

    async def rating_info(request):
        return JSONResponse(rating.describe() if rating else {"enabled": False})

    async def rating_next(request: Request):
        r = need_rating()
        return JSONResponse(await run_in_threadpool(r.next_question, rater_name(request.query_params.get("rater"))))

    async def rating_vote(request: Request):
        r = need_rating()
        try:
            body = await request.json()
            pair = body["pair"]
            if isinstance(pair, bool) or not isinstance(pair, int):
                raise TypeError("pair must be a whole number")
            fields = (rater_name(body.get("rater")), pair, str(body["left"]), str(body["right"]),
                      str(body["answer"]))
        except HTTPException:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            raise HTTPException(400, "send JSON with rater, pair, left, right and answer (left, right or same)") from None
        await run_in_threadpool(r.vote, *fields)
        return JSONResponse(await run_in_threadpool(r.next_question, fields[0]))

    async def rating_face(request: Request):
        data = await run_in_threadpool(need_rating().face_image, path_number(request, "number", "face"))
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    def page(name: str):
        async def endpoint(request):
            return FileResponse(str(WEB / name), media_type="text/html")
        return endpoint

    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, exc.detail)


    routes = [
        Route("/", page("search.html")),
        Route("/rate", page("rate.html")),
        Route("/api/health", health),
        Route("/api/info", info),
        Route("/api/search", search_upload, methods=["POST"]),
        Route("/api/faces/{face_id:int}", face),
        Route("/api/faces/{face_id:int}/similar", similar),
        Route("/api/faces/{face_id:int}/thumbnail", thumbnail),
        Route("/api/summary", summary),
        Route("/api/rating", rating_info),
        Route("/api/rating/next", rating_next),
        Route("/api/rating/vote", rating_vote, methods=["POST"]),
        Route("/api/rating/faces/{number:int}", rating_face),
        Mount("/static", StaticFiles(directory=str(WEB)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error},
                    middleware=[Middleware(ContainErrors)])
    return UploadLimit(app, max_upload_bytes)


# SQLite's integers are signed 64-bit: a larger id names nothing, whatever its digits.
MAX_ID = 2**63 - 1


def path_number(request: Request, name: str, what: str) -> int:
    value = int(request.path_params[name])
    if value > MAX_ID:
        raise HTTPException(404, f"{what} {value} is not in this index")
    return value


def face_id_of(request: Request) -> int:
    return path_number(request, "face_id", "face")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
