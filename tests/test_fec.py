"""FEC download against a local HTTP server: generated images, 404s, slow and flaky answers."""
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from fecsearch.fec import download_fec
from fecsearch.triplets import load_triplets


def picture(seed: int) -> bytes:
    image = Image.new("RGB", (200, 100), (seed * 40 % 256, 80, 160))
    buf = io.BytesIO()
    image.save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def server():
    hits = Counter()
    flaky_failures = {"/flaky.jpg": 1}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] += 1
            if self.path.startswith("/gone"):
                self.send_error(404)
                return
            if self.path == "/slow.jpg":
                time.sleep(0.5)  # slow, but inside the timeout
            if flaky_failures.get(self.path, 0) >= hits[self.path]:
                self.send_error(503)
                return
            body = picture(len(self.path))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()


def row(base, names, kind, votes):
    faces = ",".join(f"{base}/{n},0.0,0.5,0.0,1.0" for n in names)
    return f"{faces},{kind}," + ",".join(f"r{i},{v}" for i, v in enumerate(votes)) + "\n"


def test_download_dedupes_retries_and_reports_dead_links(server, tmp_path):
    base, hits = server
    csv = tmp_path / "fec.csv"
    csv.write_text(
        row(base, ["a.jpg", "b.jpg", "slow.jpg"], "ONE_CLASS_TRIPLET", [1, 1, 1, 2, 1, 3])
        + row(base, ["a.jpg", "flaky.jpg", "c.jpg"], "TWO_CLASS_TRIPLET", [2, 3, 1, 1, 2, 3])
        + row(base, ["a.jpg", "gone1.jpg", "b.jpg"], "THREE_CLASS_TRIPLET", [3, 3, 3, 3, 3, 3])
    )
    report = download_fec(csv, tmp_path / "out", workers=4, retries=2, timeout=5, backoff=0.05, progress=False)
    assert report.photos == 6 and report.photos_fetched == 5
    assert set(report.dead) == {f"{base}/gone1.jpg"} and "404" in report.dead[f"{base}/gone1.jpg"]
    assert hits["/a.jpg"] == 1  # used by three rows, fetched once
    assert hits["/flaky.jpg"] == 2  # one 503, then success
    assert hits["/gone1.jpg"] == 1  # a 404 is final
    # a.jpg's face appears in three rows with the same box: cropped and stored once
    faces = list((tmp_path / "out" / "faces").glob("*.png"))
    assert len(faces) == 5
    assert Image.open(faces[0]).size == (100, 100)  # box: left half of a 200x100 photo
    triplets = load_triplets(tmp_path / "out" / "triplets.jsonl")
    assert len(triplets) == 2 and triplets[0].odd == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["dead_links"] == 1 and manifest["triplets"] == 2 and manifest["strong_triplets"] == 1
    # resume: nothing fetched again
    before = sum(hits.values())
    again = download_fec(csv, tmp_path / "out", workers=4, retries=2, timeout=5, backoff=0.05, progress=False)
    assert again.photos_cached == 5 and again.photos_fetched == 0
    assert sum(hits.values()) - before == 1  # only the dead link is asked again
