"""What each model sees: FER+ training crops (top row) and faces from photos after detection and
alignment with the model's geometry (rows below), both as the network's input pixels (size,
grey or colour). They should look alike: the model is only trained on the first kind.

    uv run python benchmarks/crops_sheet.py --model fecnet-lite-16d --out benchmarks/crops_fer_vs_photos.png
    uv run python benchmarks/crops_sheet.py --model fecnet-faceres-16d --out benchmarks/crops_faceres.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from fecsearch.faces.images import load_image
from fecsearch.models import create_model
from fecsearch.models.pipeline import FacePipeline
from fecsearch.models.preprocess import face_pixels
from fecsearch.query.sheets import contact_sheet

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = ["couple.jpg", "selfie-many-people.jpg", "img1.jpg", "img2.jpg", "img3.jpg", "img7.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fecnet-lite-16d")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/crops_fer_vs_photos.png"))
    parser.add_argument("--n", type=int, default=12)
    args = parser.parse_args()
    # Only the preprocessing and geometry matter here: untrained weights are enough.
    model = create_model(args.model, random_init=True)
    preprocess = model.config.preprocess

    def seen(image: Image.Image) -> Image.Image:
        return Image.fromarray(face_pixels(image, preprocess))

    fer = sorted((DATA / "ferplus/train").glob("*.png"))[:: 2000][: args.n]
    tiles = [(seen(load_image(p)), f"FER {p.stem[-4:]}") for p in fer]
    pipeline = FacePipeline(model)
    for name in PHOTOS:
        for i, face in enumerate(pipeline.find_faces([load_image(DATA / "photos" / name)])[0]):
            tiles.append((seen(face.crop), f"{Path(name).stem[:8]}#{i}"))
    tiles = tiles[: 2 * args.n] if len(tiles) > 2 * args.n else tiles
    contact_sheet(tiles, args.out, columns=args.n, outline_first=False)
    print(f"wrote {args.out}: {args.model} input ({preprocess.size} px); top row FER+ training crops, "
          f"below aligned photo faces")


if __name__ == "__main__":
    main()
