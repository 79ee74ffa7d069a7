"""Expression retrieval on real photos, judged by smiles graded by hand.

`benchmarks/photo_smiles.csv` grades every face that fecsearch finds in ../shared/data/photos, by
one person looking at a contact sheet of the faces: 0 no smile, 1 a slight or closed-mouth smile,
2 a broad smile; O another expression (speaking), X not gradable (blurred or cut off). Its box
columns say which face was graded. Each face graded 0 to 2 queries an index of the photos, and its
5 nearest graded faces from other photos are compared with it. img11_reflection.jpg, the mirror
image of img11.jpg, counts as the same photo. Reported per model:

- grade gap: the mean |grade difference| between query and results (lower is better), beside
  what results drawn at random would give;
- same grade: the share of results with the query's grade;
- against the first --model: the mean of the per-query differences of grade gap, with its standard
  error (the same queries for every model, so pairing them removes most of the spread).

Many photos show the same few people, so an embedding that follows identity rather than expression
scores badly here. One query alone (tests/test_applications.py) swings between retrains; 68 of
them average that out.

    uv run python benchmarks/photo_smiles.py --model fecnet-lite-16d --model affnet-lite-cl-p \\
        --model fecnet-lite-x2-16d=fecnet-lite-x2-16d.safetensors
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos_index import photos_index  # noqa: E402

from fecsearch.store.database import FaceStore  # noqa: E402

GRADES = Path(__file__).resolve().parent / "photo_smiles.csv"
SAME_PHOTO = {"img11_reflection.jpg": "img11.jpg"}
K = 5


def read_grades() -> dict[tuple[str, int], tuple[int, list[float]]]:
    """(file name, face number) -> (grade, box) for the faces graded 0, 1 or 2."""
    with open(GRADES, newline="") as f:
        return {(r["file"], int(r["face"])): (int(r["smile"]), [float(v) for v in r["box"].split()])
                for r in csv.DictReader(f) if r["smile"].isdigit()}


def graded_vectors(index: Path, grades) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unit vectors, grades and photo names of the index's graded faces. Every graded face must be
    in the index, at the graded box: otherwise the grades describe other faces."""
    store = FaceStore(index, create=False, readonly=True)
    ids, vectors = store.embeddings()
    rows = store.faces_by_id(ids.tolist())
    found = {}
    for i, face_id in enumerate(ids.tolist()):
        row = rows[face_id]
        key = (row["path"].rsplit("/", 1)[-1], row["face_index"])
        if key in grades:
            box = np.array([row["x1"], row["y1"], row["x2"], row["y2"]])
            if np.abs(box - grades[key][1]).max() > 0.1 * (box[2] - box[0]):
                raise SystemExit(f"{key[0]} face {key[1]}: the index found it at {box.round()}, the grades "
                                 f"at {grades[key][1]}; the detector has changed, grade the faces again")
            found[key] = i
    missing = sorted(set(grades) - set(found))
    if missing:
        raise SystemExit(f"faces graded but not in the index: {missing}")
    keys = sorted(found)
    v = vectors[[found[k] for k in keys]].astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)  # cosine, and L2 for unit vectors: the same order
    photos = [SAME_PHOTO.get(name, name) for name, _ in keys]
    return v, np.array([grades[k][0] for k in keys]), photos


def score(vectors: np.ndarray, grade: np.ndarray, photos: list[str]) -> dict:
    similarity = vectors @ vectors.T
    other = np.array(photos)[:, None] != np.array(photos)[None, :]
    gaps, same, random_gaps = [], [], []
    for q in range(len(grade)):
        candidates = np.flatnonzero(other[q])
        nearest = candidates[np.argsort(-similarity[q, candidates], kind="stable")[:K]]
        gaps.append(np.abs(grade[nearest] - grade[q]).mean())
        same.append((grade[nearest] == grade[q]).mean())
        random_gaps.append(np.abs(grade[candidates] - grade[q]).mean())
    gaps = np.array(gaps)
    by_grade = {str(g): round(float(gaps[grade == g].mean()), 3) for g in np.unique(grade)}
    return {"queries": len(grade), "grade_gap": round(float(gaps.mean()), 3),
            "grade_gap_se": round(float(gaps.std(ddof=1) / np.sqrt(len(gaps))), 3),
            "grade_gap_random": round(float(np.mean(random_gaps)), 3), "grade_gap_by_query_grade": by_grade,
            "same_grade": round(float(np.mean(same)), 3), "per_query": gaps.round(4).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME, or NAME=CHECKPOINT for trained weights")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    grades = read_grades()
    results = {}
    for spec in args.model:
        name, _, checkpoint = spec.partition("=")
        options = ["--model", name] + (["--checkpoint", checkpoint] if checkpoint else [])
        results[spec] = score(*graded_vectors(photos_index(None, *options), grades))
    first = np.array(results[args.model[0]]["per_query"])
    for r in results.values():
        difference = np.array(r["per_query"]) - first
        r["against_first"] = round(float(difference.mean()), 3)
        r["against_first_se"] = round(float(difference.std(ddof=1) / np.sqrt(len(difference))), 3)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"| model | grade gap (random) | by query grade 0 / 1 / 2 | same grade | against {args.model[0]} |\n"
          f"|---|---|---|---|---|")
    for spec, r in results.items():
        g = r["grade_gap_by_query_grade"]
        print(f"| {spec} | {r['grade_gap']:.2f} ± {r['grade_gap_se']:.2f} ({r['grade_gap_random']:.2f}) | "
              f"{g['0']:.2f} / {g['1']:.2f} / {g['2']:.2f} | {r['same_grade']:.0%} | "
              f"{r['against_first']:+.2f} ± {r['against_first_se']:.2f} |")


if __name__ == "__main__":
    main()
