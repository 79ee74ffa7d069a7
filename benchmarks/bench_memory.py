"""Peak memory of `fecsearch index` on very large photos.

    python benchmarks/bench_memory.py [--count 56] [--megapixels 48]

Makes COUNT JPEGs of about MEGAPIXELS each from ../shared/data/photos (upscaled: the same faces,
larger), indexes them with `/usr/bin/time -v fecsearch index`, and reports peak RSS, faces and
time. The baseline in the same run is the same command over the original photos. The faces found
in the large copies are compared with those found in the originals (same count per photo).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def index_with_time(folder: Path, index: Path) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "fecsearch", "index", str(folder), "--index", str(index),
               "--json"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    summary = json.loads(run.stdout)
    return {"peak_rss_mb": round(peak_kb / 1024), "faces": summary["faces_added"],
            "images": summary["images_indexed"], "seconds": round(summary["seconds"], 1)}


def faces_per_image(index: Path) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(index / "faces.db")
    return {Path(p).stem: n for p, n in db.execute("select path, faces from images")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=56)
    parser.add_argument("--megapixels", type=float, default=48)
    args = parser.parse_args()
    sources = sorted(PHOTOS.glob("*.jpg"))[:args.count]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, large = tmp / "small", tmp / "large"
        small.mkdir()
        large.mkdir()
        for path in sources:
            image = Image.open(path).convert("RGB")
            image.save(small / path.name, quality=92)
            scale = (args.megapixels * 1e6 / (image.width * image.height)) ** 0.5
            image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC).save(
                large / path.name, quality=92)
        megapixels = sum(Image.open(p).width * Image.open(p).height for p in large.iterdir()) / len(sources) / 1e6
        baseline = index_with_time(small, tmp / "idx-small")
        big = index_with_time(large, tmp / "idx-large")
        same = faces_per_image(tmp / "idx-small") == faces_per_image(tmp / "idx-large")
    print(json.dumps({"photos": len(sources), "mean_megapixels": round(megapixels, 1), "original_photos": baseline,
                      "large_photos": big, "peak_rss_ratio_large_to_original": round(
                          big["peak_rss_mb"] / baseline["peak_rss_mb"], 2),
                      "same_face_count_per_photo": same}, indent=1))


if __name__ == "__main__":
    main()
