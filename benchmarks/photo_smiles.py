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

--selfie reports that one query as well: `fecsearch query` with selfie-many-people.jpg (its largest
face, a broad smile, found by detection as a user's query is), the grades of its 5 nearest faces
from other photos, and how many of those are among SELFIE_SIX, the six broad smiles the test used
to ask for.

    uv run python benchmarks/photo_smiles.py --model fecnet-lite-16d --model affnet-lite-cl-p \\
        --model fecnet-lite-x2-16d=fecnet-lite-x2-16d.safetensors [--selfie]

--subsets scores every combination of an ensemble model's networks as well (their parts of its
vectors, each scaled back to a unit vector, side by side): what each network adds on these photos.

    uv run python benchmarks/photo_smiles.py --model fecnet-lite-x2-pair-faceres-48d --subsets
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos_index import PHOTOS, photos_index  # noqa: E402

from fecsearch.models.config import get_config  # noqa: E402
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


SELFIE = "selfie-many-people.jpg"
# Six broad smiles picked by hand from one model's results for the selfie's query
# (benchmarks/query_broad_smile.png); the grades cover every face, and grade 29 of them broad.
SELFIE_SIX = {"img50.jpg", "img1.jpg", "img15.jpg", "img25.jpg", "img23.jpg", "img38.jpg"}


def grade_of(result: dict, grades) -> int | None:
    """The grade of a `fecsearch query --json` result: the graded face of its photo at its box
    (within a tenth of the box's width), None for a face not graded 0 to 2."""
    name = result["path"].rsplit("/", 1)[-1]
    box = np.array(result["box"], float)
    for (file, _), (grade, graded_box) in grades.items():
        if file == name and np.abs(box - graded_box).max() <= 0.1 * (box[2] - box[0]):
            return grade
    return None


def selfie_query(index: Path, grades, count: int = K) -> dict:
    """The selfie's broad smile as a user queries it: grades of its `count` nearest faces from other photos."""
    out = subprocess.run([sys.executable, "-m", "fecsearch", "query", str(PHOTOS / SELFIE), "--index", str(index),
                          "-k", "30", "--json"], check=True, capture_output=True, text=True).stdout
    others = [r for r in json.loads(out)["results"] if r["path"].rsplit("/", 1)[-1] != SELFIE][:count]
    names = [r["path"].rsplit("/", 1)[-1] for r in others]
    return {"results": names, "grades": [grade_of(r, grades) for r in others],
            "among_six": len(set(names) & SELFIE_SIX)}


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


def network_subsets(networks: int) -> list[tuple[int, ...]]:
    """Every proper, non-empty combination of an ensemble's networks, by their place in its vectors."""
    return [c for size in range(1, networks) for c in itertools.combinations(range(networks), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME, or NAME=CHECKPOINT for trained weights")
    parser.add_argument("--selfie", action="store_true", help="also the selfie's query (see above)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--subsets", action="store_true", help="also every combination of an ensemble's networks")
    args = parser.parse_args()
    grades = read_grades()
    results = {}
    for spec in args.model:
        name, _, checkpoint = spec.partition("=")
        options = ["--model", name] + (["--checkpoint", checkpoint] if checkpoint else [])
        index = photos_index(None, *options)
        vectors, grade, photos = graded_vectors(index, grades)
        results[spec] = score(vectors, grade, photos)
        networks = get_config(name).members
        for subset in network_subsets(networks) if args.subsets and networks > 1 else ():
            parts = np.split(vectors, networks, axis=1)
            joined = np.concatenate([parts[i] for i in subset], 1)
            results[f"{spec}{list(subset)}"] = score(joined / np.linalg.norm(joined, axis=1, keepdims=True), grade,
                                                     photos)
        if args.selfie:
            results[spec]["selfie"] = selfie_query(index, grades)
    first = np.array(results[args.model[0]]["per_query"])
    for r in results.values():
        difference = np.array(r["per_query"]) - first
        r["against_first"] = round(float(difference.mean()), 3)
        r["against_first_se"] = round(float(difference.std(ddof=1) / np.sqrt(len(difference))), 3)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    selfie = " selfie: grades of its 5 (of the six) |" if args.selfie else ""
    print(f"| model | grade gap (random) | by query grade 0 / 1 / 2 | same grade | against {args.model[0]} |{selfie}\n"
          f"|---|---|---|---|---|{'---|' if selfie else ''}")
    for spec, r in results.items():
        g = r["grade_gap_by_query_grade"]
        sq = r.get("selfie")
        grades_shown = " ".join("-" if v is None else str(v) for v in sq["grades"]) if sq else ""
        selfie_cell = f" {grades_shown} ({sq['among_six']}) |" if sq else ""
        print(f"| {spec} | {r['grade_gap']:.2f} ± {r['grade_gap_se']:.2f} ({r['grade_gap_random']:.2f}) | "
              f"{g['0']:.2f} / {g['1']:.2f} / {g['2']:.2f} | {r['same_grade']:.0%} | "
              f"{r['against_first']:+.2f} ± {r['against_first_se']:.2f} |{selfie_cell}")


if __name__ == "__main__":
    main()
