"""`fecsearch serve`: the HTTP API, its safety checks, and concurrent searches while an index grows."""
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, RunningServer, free_port
from PIL import Image
from test_images import huge_png_header

from fecsearch.models.config import DEFAULT_MODEL

CHUNK = 100  # --chunk-size of the concurrent index run: every committed state holds whole chunks


def upload(client, data: bytes, name="photo.jpg", kind="image/jpeg", params=""):
    return client.post(f"/api/search{params}", files={"image": (name, data, kind)})


def test_health_and_info(client):
    assert client.get("/api/health").json() == {"status": "ok"}
    info = client.get("/api/info").json()
    assert info["model"] == DEFAULT_MODEL and info["faces"] == info["searchable_faces"] > 70


def test_upload_finds_the_faces_and_each_finds_itself(client, photos):
    answer = upload(client, (photos / "couple.jpg").read_bytes(), "couple.jpg", params="?k=5&all=1").json()
    assert len(answer["faces"]) == 2 and answer["face"] in (0, 1)
    for face in answer["faces"]:
        best = face["results"][0]
        assert best["path"].endswith("couple.jpg") and best["distance"] < 1e-3
        assert [round(v) for v in best["box"]] == [round(v) for v in face["box"]]
    assert answer["results"] == answer["faces"][answer["face"]]["results"]
    # the chosen face, by number, and the raw-bytes form of the upload give the same answer
    second = upload(client, (photos / "couple.jpg").read_bytes(), params="?k=5&face=1").json()
    assert second["results"] == answer["faces"][1]["results"]
    raw = client.post("/api/search?k=5&face=1", content=(photos / "couple.jpg").read_bytes(),
                      headers={"Content-Type": "image/jpeg"}).json()
    assert raw["results"] == second["results"]


def test_concurrent_uploads_get_the_answers_of_sequential_ones(server, photos):
    """The test server lets two uploads run the model at once: answers must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    names = ["couple.jpg", "img3.jpg", "img7.jpg", "img54.jpg", "img40.jpg", "img49.jpg"]  # each < 2 MB

    def ask(name):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            answer = upload(c, (photos / name).read_bytes(), name, params="?k=3&all=1").json()
        return [(f["box"], [r["face_id"] for r in f["results"]]) for f in answer["faces"]]

    alone = [ask(n) for n in names]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(ask, names * 2))
    assert together == alone * 2
    assert sum(len(a) for a in alone) >= len(names) + 3  # couple.jpg and img54.jpg have several faces


def test_cropped_upload_is_one_face(client, ferplus_valid):
    crop = sorted(ferplus_valid.glob("*.png"))[0].read_bytes()
    answer = upload(client, crop, "face.png", "image/png", params="?k=3&cropped=1").json()
    assert answer["faces"] == [{"face": 0, "box": [0.0, 0.0, 48.0, 48.0], "probability": 1.0}]
    assert len(answer["results"]) == 3


def test_search_by_face_id_and_thumbnail(client):
    answer = client.get("/api/faces/3/similar?k=4").json()
    assert answer["results"][0]["face_id"] == 3 and answer["results"][0]["distance"] == 0
    distances = [r["distance"] for r in answer["results"]]
    assert distances == sorted(distances) and len(distances) == 4
    picture = client.get("/api/faces/3/thumbnail?size=96")
    assert picture.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(picture.content)).size == (96, 96)
    assert client.get("/api/faces/3").json()["face_id"] == 3


def test_people_and_the_person_filter(client, photos_index, photos):
    """The search page's "among" list: the people `fecsearch people` found, and searches within one."""
    from conftest import run_cli

    run_cli("people", "--index", photos_index, "--quiet")
    people = client.get("/api/people").json()["people"]
    assert len(people) >= 10 and all(p["faces"] >= 2 for p in people)
    person = next(p for p in people if p["faces"] >= 4)
    theirs = set(sqlite3.connect(photos_index / "faces.db").execute(
        "select face_id from face_people where person_id = ?", [person["id"]]).fetchall())
    theirs = {f for (f,) in theirs}
    query = min(theirs)
    answer = client.get(f"/api/faces/{query}/similar?k=50&person={person['id']}").json()
    assert {r["face_id"] for r in answer["results"]} == theirs
    assert answer["results"][0]["face_id"] == query
    with_photo = upload(client, (photos / "img29.jpg").read_bytes(), params=f"?person={person['id']}").json()
    assert {r["face_id"] for r in with_photo["results"]} <= theirs
    missing = client.get(f"/api/faces/{query}/similar?person=nobody")
    assert missing.status_code == 404 and "no person 'nobody'" in missing.json()["error"]


def test_summary(client):
    answer = client.get("/api/summary?n=4").json()
    assert len(answer["clusters"]) == 4 and sum(c["size"] for c in answer["clusters"]) == answer["faces"]


@pytest.mark.parametrize("path", ["/api/faces/999999/similar", "/api/faces/999999/thumbnail", "/api/faces/999999",
                                  "/api/nothing", "/static/../faces.db", "/static/%2e%2e/serve.py",
                                  "/static/..%2f..%2fREADME.md", "/api/faces/..%2f..%2fetc%2fpasswd/thumbnail",
                                  "/static//etc/passwd", "/api/rating/faces/99999"])
def test_unknown_ids_and_path_traversal_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


def test_only_the_package_pages_are_served(client):
    assert "fecsearch" in client.get("/").text and "rate" in client.get("/rate").text.lower()
    assert client.get("/static/search.js").status_code == 200


@pytest.mark.parametrize("name,data,kind,reason", [
    ("empty.jpg", b"", "image/jpeg", "empty"),
    ("notes.jpg", b"this is not an image\n" * 10, "image/jpeg", "not a recognised image"),
    ("bomb.png", huge_png_header(30000, 30000), "image/png", "decompression bomb"),
    ("large.png", huge_png_header(8000, 6000), "image/png", "8000x6000"),
    ("notes.txt", b"hello", "text/plain", "not an image type"),
])
def test_bad_uploads_are_400_with_the_reason(client, name, data, kind, reason):
    response = upload(client, data, name, kind)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"] and (name in response.json()["error"] or kind == "text/plain")


def test_truncated_jpeg_is_400(client, photos):
    data = (photos / "couple.jpg").read_bytes()
    response = upload(client, data[: len(data) // 3], "cut.jpg")
    assert response.status_code == 400 and "cut.jpg" in response.json()["error"]


@pytest.mark.parametrize("params", ["?k=0", "?k=abc", "?k=1000", "?face=7"])
def test_bad_parameters_are_400(client, photos, params):
    response = upload(client, (photos / "couple.jpg").read_bytes(), params=params)
    assert response.status_code == 400 and response.json()["error"]


def test_wrong_body_is_400(client):
    response = client.post("/api/search", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_oversized_upload_is_413_announced_or_streamed(client):
    big = b"\xff" * (3 * 1024 * 1024)
    response = upload(client, big, "big.jpg")
    assert response.status_code == 413 and "MiB" in response.json()["error"]

    def chunks():  # no Content-Length: the server must count what arrives
        for _ in range(48):
            yield b"\xff" * 65536

    response = client.post("/api/search", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 413


def test_rating_api_checks_its_input(client, server):
    question = client.get("/api/rating/next?rater=checker").json()["question"]
    assert client.get("/api/rating/next?rater=").status_code == 400
    bad = {"rater": "checker", "pair": question["pair"], "left": "x.png", "right": question["right"], "answer": "left"}
    assert client.post("/api/rating/vote", json=bad).status_code == 400
    bad = dict(bad, left=question["left"], answer="maybe")
    assert client.post("/api/rating/vote", json=bad).status_code == 400
    bad = dict(bad, answer="left", pair=10**6)
    assert client.post("/api/rating/vote", json=bad).status_code == 404
    assert client.post("/api/rating/vote", content=b"not json").status_code == 400
    picture = client.get(question["query_image"])
    assert picture.headers["content-type"] == "image/png"


def test_serve_command_binds_to_loopback_by_default(photos_index):
    from fecsearch.serve.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fecsearch", "serve", "--index", str(photos_index),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/api/health").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()
                time.sleep(0.3)
        # /proc/net/tcp lists listening sockets (state 0A) by hex address:port; 0100007F is 127.0.0.1
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert listening == [f"0100007F:{port:04X}"]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_searches_while_an_index_run_adds_faces(tmp_path, photos_index, ferplus_valid, photos):
    """Searches by upload and by id keep answering, correctly, while another process indexes into
    the same index; what they see is always a whole number of committed chunks."""
    from fecsearch.serve.app import create_app
    from fecsearch.serve.library import Library

    index = tmp_path / "index"
    shutil.copytree(photos_index, index)
    base = sqlite3.connect(index / "faces.db").execute("select count(*) from faces").fetchone()[0]
    new = tmp_path / "new"
    new.mkdir()
    for p in sorted(ferplus_valid.glob("*.png"))[:1000]:
        os.symlink(p, new / p.name)
    running = RunningServer(create_app(Library(index, refresh_seconds=0.2)))
    allowed = {base + CHUNK * i for i in range(1000 // CHUNK + 1)}
    failures, seen = [], set()
    stop = threading.Event()
    photo = (photos / "couple.jpg").read_bytes()

    def hammer(kind):
        with httpx.Client(base_url=running.url, timeout=60) as c:
            while not stop.is_set():
                if kind == "upload":
                    r = upload(c, photo, "couple.jpg", params="?k=3")
                elif kind == "id":
                    r = c.get("/api/faces/1/similar?k=20")
                else:
                    r = c.get("/api/info")
                if r.status_code != 200:
                    failures.append((kind, r.status_code, r.text))
                    continue
                body = r.json()
                if kind == "info":
                    seen.add(body["searchable_faces"])
                    if body["searchable_faces"] not in allowed or body["faces"] not in allowed:
                        failures.append(("torn", body))
                else:
                    distances = [x["distance"] for x in body["results"]]
                    if distances != sorted(distances) or body["results"][0]["distance"] > 1e-3:
                        failures.append((kind, body))

    threads = [threading.Thread(target=hammer, args=(k,)) for k in ("upload", "id", "id", "info")]
    for t in threads:
        t.start()
    try:
        proc = subprocess.run([sys.executable, "-m", "fecsearch", "index", str(new), "--index", str(index),
                               "--cropped", "--chunk-size", str(CHUNK), "--quiet"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    with httpx.Client(base_url=running.url, timeout=60) as c:
        info = c.get("/api/info").json()
        newest = sqlite3.connect(index / "faces.db").execute("select max(id) from faces").fetchone()[0]
        found = c.get(f"/api/faces/{newest}/similar?k=1").json()["results"][0]
    running.stop()
    assert not failures, failures[:3]
    assert info["faces"] == info["searchable_faces"] == base + 1000
    assert found["face_id"] == newest and found["distance"] == 0
    assert len(seen) >= 2, f"the searches saw only {seen}: the index run did not overlap them"
