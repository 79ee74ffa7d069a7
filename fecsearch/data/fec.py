"""Download Google's FEC dataset from its CSV: each photo once, each face cropped once, a manifest.

Many of FEC's Flickr URLs are dead; they are reported, not retried for ever. The download resumes:
photos and crops already on disk are not fetched or cut again.

Each face is stored with a margin around FEC's box and with the landmarks MTCNN finds for it
(faces.jsonl), so that training aligns it with the model's own geometry, exactly as a query face
is aligned (fec_face); a face MTCNN misses is used as its box, resized.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from fecsearch.data.triplets import Triplet, parse_fec_csv, save_triplets, strong_agreement
from fecsearch.faces.align import FaceGeometry, align_face, box_iou
from fecsearch.faces.images import BadImage, load_image

# Statuses that will not change by asking again.
PERMANENT = {400, 401, 403, 404, 410, 451}


def url_key(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()


def face_key(url: str, box) -> str:
    return hashlib.sha1(f"{url}|{','.join(f'{v:.6f}' for v in box)}".encode()).hexdigest()


@dataclass
class FetchResult:
    url: str
    ok: bool
    reason: str = ""
    attempts: int = 0
    cached: bool = False


def fetch(url: str, dest: Path, retries: int = 3, timeout: float = 20.0, backoff: float = 1.0) -> FetchResult:
    """GET url into dest atomically; retry timeouts and server errors with exponential backoff."""
    if dest.exists():
        return FetchResult(url, True, cached=True)
    reason = ""
    for attempt in range(1, retries + 2):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "fecsearch"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read()
            tmp = dest.with_name(dest.name + f".{os.getpid()}.part")
            tmp.write_bytes(data)
            tmp.replace(dest)
            return FetchResult(url, True, attempts=attempt)
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code}"
            if err.code in PERMANENT:
                return FetchResult(url, False, reason, attempt)
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            reason = str(getattr(err, "reason", err)) or type(err).__name__
        if attempt <= retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    return FetchResult(url, False, f"{reason} after {retries + 1} attempts", retries + 1)


@dataclass
class DownloadReport:
    rows: int = 0
    photos: int = 0
    photos_fetched: int = 0
    photos_cached: int = 0
    dead: dict = field(default_factory=dict)
    faces: int = 0
    triplets: int = 0
    strong_triplets: int = 0
    aligned: int = 0  # faces with landmarks
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["dead_links"] = len(self.dead)
        d.pop("dead")
        return d


# Stored crops reach this far beyond FEC's box on each side, as a share of the box's size:
# room for alignment to rotate and scale the face without running out of picture.
MARGIN = 0.5


LANDMARK_CANVAS = 320


def crop_face(photo: Path, box, dest: Path) -> list[float]:
    """Cut a face by FEC's box (x_min/width, x_max/width, y_min/height, y_max/height) with MARGIN
    around it; returns the box in the stored crop's pixels."""
    image = load_image(photo)
    x0, x1, y0, y1 = box
    w, h = image.size
    bx0, by0, bx1, by1 = x0 * w, y0 * h, x1 * w, y1 * h
    mx, my = MARGIN * (bx1 - bx0), MARGIN * (by1 - by0)
    left, top = max(0, round(bx0 - mx)), max(0, round(by0 - my))
    right, bottom = min(w, round(bx1 + mx)), min(h, round(by1 + my))
    crop = image.crop((left, top, right, bottom))
    tmp = dest.with_name(dest.name + ".part.png")
    crop.save(tmp)
    tmp.replace(dest)
    return [bx0 - left, by0 - top, bx1 - left, by1 - top]


def find_landmarks(detector, crop_path: Path, box) -> list | None:
    """The 5 landmarks of the detected face that best matches FEC's box (IoU >= 0.3), or None."""
    faces = detector.detect([load_image(crop_path)])[0]
    best = max(faces, key=lambda f: box_iou(f.box, box), default=None)
    if best is None or box_iou(best.box, box) < 0.3:
        return None
    return [[round(float(v), 2) for v in point] for point in best.landmarks]


@dataclass
class FecFace:
    path: Path
    box: list[float]
    landmarks: list | None


def read_fec_faces(folder: str | Path) -> dict[str, FecFace]:
    """faces.jsonl of a download, by the name triplets use ("faces/<key>.png")."""
    folder = Path(folder)
    faces = {}
    with open(folder / "faces.jsonl") as f:
        for record in map(json.loads, f):
            faces[record["face"]] = FecFace(folder / record["face"], record["box"], record["landmarks"])
    return faces


def fec_face(face: FecFace, geometry: FaceGeometry) -> Image.Image:
    """A FEC face as the model sees it: aligned by its landmarks with the model's geometry, as
    query faces are (faces.align_detected); without landmarks, its box resized."""
    image = load_image(face.path)
    if face.landmarks is not None:
        return align_face(image, face.landmarks[0], face.landmarks[1], geometry)
    crop = image.crop(tuple(round(v) for v in face.box))
    return crop.resize((geometry.size, geometry.size), Image.BICUBIC)


def download_fec(csv_path, out_dir, workers: int = 16, retries: int = 3, timeout: float = 20.0,
                 backoff: float = 1.0, progress: bool = True, landmarks: bool = True) -> DownloadReport:
    started = time.time()
    out = Path(out_dir)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    (out / "faces").mkdir(exist_ok=True)
    rows = parse_fec_csv(csv_path)
    report = DownloadReport(rows=len(rows))
    urls = sorted({f["url"] for r in rows for f in r["faces"]})
    report.photos = len(urls)
    dest = {u: out / "photos" / f"{url_key(u)}.jpg" for u in urls}
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda u: fetch(u, dest[u], retries, timeout, backoff), urls)
        for r in tqdm(results, total=len(urls), unit="photo", desc="downloading", disable=not progress):
            if r.ok:
                report.photos_cached += r.cached
                report.photos_fetched += not r.cached
            else:
                report.dead[r.url] = r.reason
    faces = {}
    for r in rows:
        for f in r["faces"]:
            if f["url"] not in report.dead:
                faces[face_key(f["url"], f["box"])] = f
    records = {}
    if (out / "faces.jsonl").exists():  # a resumed download: faces already cut and measured
        with open(out / "faces.jsonl") as fh:
            records = {r["face"]: r for r in map(json.loads, fh)}
    detector = None
    if landmarks:
        from fecsearch.faces.detect import DetectorConfig, FaceDetector

        # A stored crop is about half face: a small canvas shows it as large as a photo's faces
        # usually are on the full 1024 canvas, for a fraction of the detector's work.
        detector = FaceDetector(DetectorConfig(canvas_size=LANDMARK_CANVAS))
    for key, f in tqdm(faces.items(), unit="face", desc="cropping", disable=not progress):
        path = out / "faces" / f"{key}.png"
        name = f"faces/{key}.png"
        if path.exists() and name in records:
            continue
        try:
            box = crop_face(dest[f["url"]], f["box"], path)
            marks = find_landmarks(detector, path, box) if detector else None
            records[name] = {"face": name, "box": [round(v, 2) for v in box], "landmarks": marks}
        except BadImage as err:
            report.dead[f["url"]] = f"not an image: {err}"
    tmp = out / "faces.jsonl.tmp"
    with open(tmp, "w") as fh:
        for name in sorted(records):
            fh.write(json.dumps(records[name]) + "\n")
    tmp.replace(out / "faces.jsonl")
    report.aligned = sum(r["landmarks"] is not None for r in records.values())
    triplets = []
    for r in rows:
        keys = [face_key(f["url"], f["box"]) for f in r["faces"]]
        if all((out / "faces" / f"{k}.png").exists() for k in keys):
            triplets.append(Triplet(tuple(f"faces/{k}.png" for k in keys), r["type"], r["annotations"]))
    report.faces = sum(1 for k in faces if (out / "faces" / f"{k}.png").exists())
    report.triplets = len(triplets)
    report.strong_triplets = sum(strong_agreement(t.annotations) for t in triplets)
    save_triplets(triplets, out / "triplets.jsonl")
    report.seconds = round(time.time() - started, 1)
    (out / "dead_links.json").write_text(json.dumps(report.dead, indent=1, sort_keys=True))
    (out / "manifest.json").write_text(json.dumps({"csv": str(csv_path), **report.to_dict()}, indent=1))
    return report
