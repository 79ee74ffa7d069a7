"""Photos of several faces at many sizes, made from the test photos: pictures where the largest face
is hard to tell from the others, for FaceDetector.detect_largest (tests/test_faces.py,
benchmarks/probe_largest_face.py).

    python tests/helpers/collages.py OUT_FOLDER [COUNT]     # writes COUNT collages as JPEG
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "photos"


def collage(photos: list[Path], seed: int) -> Image.Image:
    """2 to 5 of the photos, each shrunk to 8% to 60% of a random canvas's long side, pasted at random
    places (they may overlap) on a random grey."""
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(600, 1400)), int(rng.integers(500, 1100)))
    board = Image.new("RGB", size, (int(rng.integers(40, 220)),) * 3)
    for i in rng.choice(len(photos), size=int(rng.integers(2, 6)), replace=False):
        with Image.open(photos[i]) as im:
            photo = im.convert("RGB")
        scale = float(rng.uniform(0.08, 0.6)) * max(size) / max(photo.size)
        photo = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))),
                             Image.BILINEAR)
        board.paste(photo, (int(rng.integers(-photo.width // 4, size[0] - photo.width * 3 // 4)),
                            int(rng.integers(-photo.height // 4, size[1] - photo.height * 3 // 4))))
    return board


def main(out: str, count: int = 40) -> None:
    photos = sorted(PHOTOS.glob("*.jpg"))
    Path(out).mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        collage(photos, seed).save(Path(out) / f"collage{seed:03d}.jpg", quality=92)


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
