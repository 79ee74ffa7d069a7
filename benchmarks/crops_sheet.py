"""A sheet of what the lite models see: FER+ training crops (top rows) and faces from photos after
detection and alignment with the models' geometry (bottom rows). They should look alike.

    uv run python benchmarks/crops_sheet.py --out benchmarks/crops_fer_vs_photos.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from fecsearch.images import load_image
from fecsearch.models import get_config
from fecsearch.pipeline import FacePipeline
from fecsearch.sheet import contact_sheet

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class _GeometryOnly:
    """FacePipeline needs a model only for its config when it just finds and aligns faces."""

    def __init__(self, config):
        self.config = config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/crops_fer_vs_photos.png"))
    parser.add_argument("--n", type=int, default=12)
    args = parser.parse_args()
    config = get_config("fecnet-lite-16d")
    fer = sorted((DATA / "ferplus/train").glob("*.png"))[:: 2000][: args.n]
    tiles = [(Image.open(p).convert("L"), f"FER {p.stem[-4:]}") for p in fer]
    pipeline = FacePipeline(_GeometryOnly(config))
    photos = ["couple.jpg", "selfie-many-people.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "img7.jpg"]
    for name in photos:
        for i, face in enumerate(pipeline.find_faces([load_image(DATA / "photos" / name)])[0]):
            tiles.append((face.crop.convert("L"), f"{Path(name).stem[:8]}#{i}"))
    tiles = tiles[: 2 * args.n] if len(tiles) > 2 * args.n else tiles
    contact_sheet([(t, c) for t, c in tiles], args.out, columns=args.n, outline_first=False)
    print(f"wrote {args.out}: top row FER+ training crops, below aligned photo faces")


if __name__ == "__main__":
    main()
