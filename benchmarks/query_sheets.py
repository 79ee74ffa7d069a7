"""The nearest faces to a broad smile, a neutral face and a surprised face in ../shared/data/photos,
with each model: one contact sheet per model, a row per query (the query outlined first).

    uv run python benchmarks/query_sheets.py --model fecnet-lite-x2-pair-32d --model affnet-lite-x2-cl-p

The broad smile is the selfie's largest face and the neutral face img10.jpg's; the surprised face
is the photos' face that affnet-lite-cl-f scores highest for surprise (printed), so that no
model chooses its own query.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from fecsearch.query.search import Searcher
from fecsearch.query.sheets import contact_sheet, face_thumbnail

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def build_index(model: str, folder: Path) -> Path:
    index = folder / model
    subprocess.run([sys.executable, "-m", "fecsearch", "index", str(PHOTOS), "--index", str(index), "--model", model,
                    "--quiet"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return index


def most_surprised(folder: Path) -> tuple[str, int]:
    """(image path, face number) of the face affnet-lite-cl-f finds most surprised."""
    from fecsearch.models import EMOTIONS

    searcher = Searcher(build_index("affnet-lite-cl-f", folder))
    ids, logits = searcher.store.embeddings()
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    best = int(ids[np.argmax(probabilities[:, EMOTIONS.index("surprise")])])
    row = searcher.store.faces_by_id([best])[best]
    return row["path"], row["face_index"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks")
    parser.add_argument("-k", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        surprised = most_surprised(tmp)
        print(f"surprised query: {Path(surprised[0]).name} face {surprised[1]}")
        queries = [("broad smile", str(PHOTOS / "selfie-many-people.jpg"), None),
                   ("neutral", str(PHOTOS / "img10.jpg"), None),
                   ("surprise", surprised[0], surprised[1])]
        for model in args.model:
            searcher = Searcher(build_index(model, tmp))
            tiles = []
            for label, path, face in queries:
                query = searcher.query_image(path, face)
                tiles.append((face_thumbnail(path, query.face.box), f"{label}"))
                results = [r for r in searcher.search(query.vector, args.k + 1) if r.distance > 1e-4][:args.k]
                tiles += [(face_thumbnail(r.path, r.box), f"{Path(r.path).stem} {r.distance:.2f}") for r in results]
            out = args.out_dir / f"query_sheet_{model}.png"
            contact_sheet(tiles, out, columns=args.k + 1)
            print(f"wrote {out}")


if __name__ == "__main__":
    main()
