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

import ipaddress
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fecsearch.serve.guards import ContainErrors, UploadLimit, error
from fecsearch.serve.library import MAX_K, MAX_UPLOAD_BYTES, Library
from fecsearch.serve.rating import Rating


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


WEB = resources.files("fecsearch.serve") / "web"


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
                                                    cropped, request.query_params.get("person") or None))

    async def similar(request: Request):
        k = parse_int(request, "k", 10, 1, MAX_K)
        return JSONResponse(await run_in_threadpool(library.search_face, face_id_of(request), k,
                                                    request.query_params.get("person") or None))

    async def people(request):
        return JSONResponse(await run_in_threadpool(library.people))

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
            raise HTTPException(400, "send JSON with rater, pair, left, right and answer "
                                     "(left, right or same)") from None
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
        Route("/api/people", people),
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
