"""FEC download against a local HTTP server: generated images, 404s, slow and flaky answers."""
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from fecsearch.data.fec import download_fec
from fecsearch.data.triplets import load_triplets


def picture(seed: int) -> bytes:
    image = Image.new("RGB", (200, 100), (seed * 40 % 256, 80, 160))
    buf = io.BytesIO()
    image.save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def server(photos):
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
            if self.path.startswith("/photos/"):  # real photos, with faces
                body = (photos / self.path.split("/")[-1]).read_bytes()
            else:
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


def csv_line(cells: list[str], kind: str, votes: list[int]) -> str:
    """One row of FEC's CSV: three 'url,x0,x1,y0,y1' cells, the triplet type, (rater, answer) pairs."""
    return ",".join(cells) + f",{kind}," + ",".join(f"r{i},{v}" for i, v in enumerate(votes)) + "\n"


def row(base, names, kind, votes):
    return csv_line([f"{base}/{n},0.0,0.5,0.0,1.0" for n in names], kind, votes)


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
    # box: the left half of a 200x100 photo, stored with half its size again around it, inside the photo
    assert Image.open(faces[0]).size == (150, 100)
    records = [json.loads(line) for line in (tmp_path / "out" / "faces.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all(r["box"] == [0, 0, 100, 100] and r["landmarks"] is None for r in records)
    triplets = load_triplets(tmp_path / "out" / "triplets.jsonl")
    assert len(triplets) == 2 and triplets[0].odd == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["dead_links"] == 1 and manifest["triplets"] == 2 and manifest["strong_triplets"] == 1
    # resume: nothing fetched again
    before = sum(hits.values())
    again = download_fec(csv, tmp_path / "out", workers=4, retries=2, timeout=5, backoff=0.05, progress=False)
    assert again.photos_cached == 5 and again.photos_fetched == 0
    assert sum(hits.values()) - before == 1  # only the dead link is asked again


# couple.jpg (2280x1588): its two faces as `fecsearch index` finds them
COUPLE_FACES = [(347.3, 486.6, 966.5, 1341.5), (1409.0, 278.2, 1987.4, 1100.1)]


def fec_row(base, faces, kind, votes):
    return csv_line([f"{base}/photos/{name},{x1 / w:.6f},{x2 / w:.6f},{y1 / h:.6f},{y2 / h:.6f}"
                     for name, (x1, y1, x2, y2), (w, h) in faces], kind, votes)


def test_fec_faces_are_aligned_as_queries_are(server, tmp_path, photos):
    """A FEC face reaches training as the crop a query of the same face gets: same landmarks, same geometry."""
    import numpy as np

    from fecsearch.data.fec import fec_face, read_fec_faces
    from fecsearch.faces.images import load_image
    from fecsearch.models import create_model
    from fecsearch.models.pipeline import FacePipeline

    base, _ = server
    size = (2280, 1588)
    csv = tmp_path / "fec.csv"
    csv.write_text(fec_row(base, [("couple.jpg", COUPLE_FACES[0], size), ("couple.jpg", COUPLE_FACES[1], size),
                                  ("img1.jpg", (440.2, 170.8, 1005.7, 993.1), Image.open(photos / "img1.jpg").size)],
                           "ONE_CLASS_TRIPLET", [3] * 6))
    report = download_fec(csv, tmp_path / "fec", workers=2, timeout=10, backoff=0.05, progress=False)
    assert report.faces == 3 and report.aligned == 3
    faces = read_fec_faces(tmp_path / "fec")
    model = create_model("fecnet-lite-16d")
    query = FacePipeline(model).find_faces([load_image(photos / "couple.jpg")])[0]
    triplet = load_triplets(tmp_path / "fec" / "triplets.jsonl")[0]
    training = [fec_face(faces[name], model.config.preprocess.geometry) for name in triplet.faces[:2]]
    assert len(query) == 2 and len(training) == 2
    def difference(a, b):  # mean absolute grey-level difference, 0-255
        return np.abs(np.asarray(a.convert("L"), float) - np.asarray(b.convert("L"), float)).mean()

    from fecsearch.data.fec import FecFace

    for crop, name in zip(training, triplet.faces[:2]):
        match = min(query, key=lambda q: difference(crop, q.crop))
        same, other = sorted(difference(crop, q.crop) for q in query)
        unaligned = fec_face(FecFace(faces[name].path, faces[name].box, None), model.config.preprocess.geometry)
        # measured: 7.3 and 6.8 for the same face (MTCNN's landmarks move a little with the scale it
        # sees the face at), 26 and 23 for the other face, 36 and 38 for the box merely resized
        assert same < 12 and same < other / 2 and same < difference(unaligned, match.crop) / 3


def test_train_fecnet_on_a_fec_download(server, tmp_path):
    from conftest import run_cli

    base, _ = server
    csv = tmp_path / "fec.csv"
    csv.write_text(
        row(base, ["a.jpg", "b.jpg", "c.jpg"], "ONE_CLASS_TRIPLET", [1, 1, 1, 2, 1, 3])
        + row(base, ["d.jpg", "e.jpg", "f.jpg"], "TWO_CLASS_TRIPLET", [2, 2, 2, 2, 1, 3])
        + row(base, ["a.jpg", "e.jpg", "g.jpg"], "THREE_CLASS_TRIPLET", [3, 1, 2, 3, 1, 2])  # weak: no 2/3
    )
    download_fec(csv, tmp_path / "fec", workers=4, timeout=5, backoff=0.05, progress=False, landmarks=False)
    out = tmp_path / "fecnet-fec.safetensors"
    trunk = Path(__file__).resolve().parents[1] / "fecsearch" / "weights" / "affnet-lite-cl.safetensors"
    result = run_cli("train", "fecnet", "--train", tmp_path / "fec", "--valid", tmp_path / "fec", "--trunk", trunk,
                     "--out", out, "--epochs", 2, "--steps", 3, "--per-type", 2)
    assert "loaded 6 training and 6 validation faces" in result.output  # the weak triplet's g.jpg is left out
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        metrics = json.loads(f.metadata()["metrics"])
    assert metrics["triplet_source"] == "fec" and metrics["agreement"] == "strong"
    assert len(metrics["history"]) == 2 and 0 <= metrics["history"][-1]["valid_triplet_accuracy"]["overall"] <= 1
    refused = run_cli("train", "fecnet", "--train", tmp_path / "fec", "--valid", tmp_path / "fec", "--trunk", trunk,
                      "--out", tmp_path / "tl.safetensors", "--triplets", "labels", ok=False)
    assert refused.exit_code != 0 and "FER+ folder" in refused.output
