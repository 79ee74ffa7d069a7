"""Download Google's FEC dataset from its CSV: each photo once, each face cropped once, a manifest.

Many of FEC's Flickr URLs are dead; they are reported, not retried for ever. The download resumes:
photos and crops already on disk are not fetched or cut again.
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

from tqdm import tqdm

from .images import BadImage, load_image
from .triplets import Triplet, parse_fec_csv, save_triplets, strong_agreement

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
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["dead_links"] = len(self.dead)
        d.pop("dead")
        return d


def crop_face(photo: Path, box, dest: Path) -> None:
    """Cut a face by FEC's box (x_min/width, x_max/width, y_min/height, y_max/height)."""
    image = load_image(photo)
    x0, x1, y0, y1 = box
    w, h = image.size
    crop = image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))
    tmp = dest.with_name(dest.name + ".part.png")
    crop.save(tmp)
    tmp.replace(dest)


def download_fec(csv_path, out_dir, workers: int = 16, retries: int = 3, timeout: float = 20.0,
                 backoff: float = 1.0, progress: bool = True) -> DownloadReport:
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
    for key, f in tqdm(faces.items(), unit="face", desc="cropping", disable=not progress):
        path = out / "faces" / f"{key}.png"
        if path.exists():
            continue
        try:
            crop_face(dest[f["url"]], f["box"], path)
        except BadImage as err:
            report.dead[f["url"]] = f"not an image: {err}"
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
