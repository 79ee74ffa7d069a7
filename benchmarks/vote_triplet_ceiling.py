"""How well can anything score on FER+ vote triplets? A simulation of the ten raters' noise.

    uv run python benchmarks/vote_triplet_ceiling.py [--data ../shared/data/ferplus/valid] [--worlds 5]

A vote triplet's answer comes from ten raters per face; another ten would sometimes answer
differently. This script simulates worlds in which each face's true vote distribution is known:
  observed   the true distribution is the one FER+ recorded
  posterior  it is drawn from Dirichlet(counts + 0.5), the recorded counts' posterior
In each world a panel of as many raters as FER+ had casts new votes (multinomial), the vote-triplet
rule of shared/data/README.md (6,000 triplets, classes drawn uniformly, strong agreement 0.25) makes
triplets from the panel's votes, and two predictors answer them:
  oracle      the true distributions with total-variation distance: the best any model of the
              faces could do, since nothing in a face tells a model how its ten raters happened to vote
  panel       a second, independent panel of raters: what a human panel would score
Prints the mean and range over --worlds simulated worlds, as JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from fecsearch.data.labels import LabelledFaces
from fecsearch.data.triplets import ferplus_vote_triplets, tv_distance

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_counts(folder: Path) -> tuple[list[Path], np.ndarray]:
    paths, counts = [], []
    with open(folder / "label.csv", newline="") as f:
        for row in csv.reader(f):
            paths.append(folder / row[0])
            counts.append([float(v) for v in row[2:10]])
    return paths, np.array(counts)


def panel(true_p: np.ndarray, raters: np.ndarray, rng) -> np.ndarray:
    return np.array([rng.multinomial(int(n), p) if n else np.zeros(8) for p, n in zip(true_p, raters)])


def kept(paths, counts, min_votes: int = 6) -> tuple[LabelledFaces, np.ndarray]:
    """The README's rule (>= 6 emotion votes, unique maximum), returning the faces and their rows."""
    total = counts.sum(1)
    top = counts.max(1)
    ok = (total >= min_votes) & ((counts == top[:, None]).sum(1) == 1)
    rows = np.flatnonzero(ok)
    votes = counts[rows] / total[rows, None]
    return LabelledFaces([paths[i] for i in rows], votes.argmax(1), votes.astype(np.float32)), rows


def accuracy(triplets, index: dict, distributions: np.ndarray) -> float:
    right = 0
    for t in triplets:
        v = distributions[[index[f] for f in t.faces]]
        d = np.array([tv_distance(v[0], v[1]), tv_distance(v[0], v[2]), tv_distance(v[1], v[2])])
        # the odd one out is the face not in the closest pair; a tie counts as wrong
        closest = np.flatnonzero(d == d.min())
        right += len(closest) == 1 and (3, 2, 1)[closest[0]] == t.odd
    return right / len(triplets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA / "ferplus" / "valid")
    parser.add_argument("--worlds", type=int, default=5)
    parser.add_argument("--count", type=int, default=6000)
    args = parser.parse_args()
    paths, counts = read_counts(args.data)
    raters = counts.sum(1)
    observed = counts / np.maximum(raters, 1)[:, None]
    result = {"data": str(args.data), "worlds": args.worlds, "triplets": args.count}
    for truth in ("observed", "posterior"):
        scores = {"oracle": [], "panel": []}
        for world in range(args.worlds):
            rng = np.random.default_rng(world)
            true_p = observed if truth == "observed" else np.array([rng.dirichlet(c + 0.5) for c in counts])
            first = panel(true_p, raters, rng)
            faces, rows = kept(paths, first)
            triplets = ferplus_vote_triplets(faces, args.count, seed=2019 + world)
            index = {str(p): i for i, p in zip(rows, faces.paths)}
            second = panel(true_p, raters, rng)
            second_p = second / np.maximum(second.sum(1), 1)[:, None]
            scores["oracle"].append(accuracy(triplets, index, true_p))
            scores["panel"].append(accuracy(triplets, index, second_p))
        for who, s in scores.items():
            result[f"{truth}_{who}"] = {"mean": round(100 * float(np.mean(s)), 1),
                                        "min": round(100 * min(s), 1), "max": round(100 * max(s), 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
