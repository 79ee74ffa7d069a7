"""How far is a model from issue 10's quality targets, counted in its measurements' own noise?

    uv run python benchmarks/target_margins.py [--model NAME [--checkpoint FILE]]
        [--baseline NAME [--baseline-checkpoint FILE]]

The targets are single numbers on finite sets: 6,000 FER+ valid vote triplets and CK+48's 981 faces
of 118 people. This script measures the model and its classifier baseline on both, as `fecsearch
eval triplets` and `eval retrieval` do, and resamples the sets to say how much those numbers move:
  triplets  the model's accuracy (its own distance), the baseline's with its best distance, and the
            lead between them, paired (both answer the same resampled triplets)
  CK+48     precision@5 of each and their difference, resampling whole people (a person's 6 to
            33 faces move together: their queries share a face and a way of posing)
With a FECNet as --baseline, the same resampling compares two trainings on the same faces.
Each with its bootstrap standard error and 95% interval (--resamples draws), and how many standard
errors it lies from the target. A resampled set is another draw of faces from the same sources, not
a new model: the spread between trainings of one recipe comes on top of this (model cards).
Prints JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fecsearch.cli.common import load
from fecsearch.data.labels import read_class_folders, read_ferplus
from fecsearch.data.triplets import validation_triplets
from fecsearch.evaluation.metrics import embed_paths, subject_independent_hits, subject_of, triplet_correct
from fecsearch.models.config import DEFAULT_BASELINE, DEFAULT_MODEL
from fecsearch.vectors.metrics import DISTANCES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRIPLET_TARGET, LEAD_TARGET, CK_TARGET = 0.80, 0.08, 0.88


def summary(values: np.ndarray, point: float, target: float | None) -> dict:
    """Point estimate, bootstrap standard error and 95% interval; distance to the target in SEs."""
    se = float(values.std(ddof=1))
    row = {"value": round(point, 4), "se": round(se, 4),
           "interval_95": [round(float(np.quantile(values, q)), 4) for q in (0.025, 0.975)]}
    if target is not None:
        row.update(target=target, ses_above_target=round((point - target) / se, 2) if se else None)
    return row


def triplet_margins(model, baseline, folder: Path, resamples: int, rng) -> dict:
    faces = read_ferplus(folder)
    triplets = validation_triplets(faces)
    index = {str(p): i for i, p in enumerate(faces.paths)}
    ids = np.array([[index[t.faces[k]] for k in range(3)] for t in triplets])
    odd = np.array([t.odd for t in triplets])

    def correct(network, distances):
        v = embed_paths(network, faces.paths)
        return {d: triplet_correct(v[ids[:, 0]], v[ids[:, 1]], v[ids[:, 2]], odd, d) for d in distances}

    ours = correct(model, [model.config.distance])[model.config.distance]
    theirs_by_distance = correct(baseline, DISTANCES)
    best = max(theirs_by_distance, key=lambda d: theirs_by_distance[d].mean())
    theirs = theirs_by_distance[best]
    draws = rng.integers(0, len(odd), size=(resamples, len(odd)))
    a, b = ours[draws].mean(1), theirs[draws].mean(1)
    return {"triplets": int(len(odd)), "baseline_distance": best,
            "model": summary(a, float(ours.mean()), TRIPLET_TARGET),
            "baseline": summary(b, float(theirs.mean()), None),
            "lead": summary(a - b, float(ours.mean() - theirs.mean()), LEAD_TARGET),
            "both_right_or_both_wrong": round(float((ours == theirs).mean()), 4)}


def ckplus_margins(model, baseline, folder: Path, resamples: int, rng) -> dict:
    faces = read_class_folders(folder)
    subjects = np.array([subject_of(p) for p in faces.paths])
    hits = {name: subject_independent_hits(embed_paths(net, faces.paths), faces.labels, list(subjects), 5,
                                           net.config.distance)
            for name, net in (("model", model), ("baseline", baseline))}
    people = np.unique(subjects)
    rows = [np.flatnonzero(subjects == s) for s in people]
    sums = {k: np.array([h[r].sum() for r in rows]) for k, h in hits.items()}
    counts = np.array([len(r) for r in rows])
    draws = rng.integers(0, len(people), size=(resamples, len(people)))
    share = {k: s[draws].sum(1) / counts[draws].sum(1) for k, s in sums.items()}
    point = {k: float(h.mean()) for k, h in hits.items()}
    return {"faces": int(len(subjects)), "people": int(len(people)),
            "model": summary(share["model"], point["model"], CK_TARGET),
            "baseline": summary(share["baseline"], point["baseline"], None),
            "difference": summary(share["model"] - share["baseline"], point["model"] - point["baseline"], None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--checkpoint", help="Weights for --model (default: the shipped ones).")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--baseline-checkpoint", help="Weights for --baseline (default: the shipped ones).")
    parser.add_argument("--data", type=Path, default=DATA, help="The folder holding ferplus/ and ckplus48/.")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, baseline = load(args.model, args.checkpoint), load(args.baseline, args.baseline_checkpoint)
    rng = np.random.default_rng(args.seed)
    print(json.dumps({"model": args.model, "checkpoint": args.checkpoint, "baseline": args.baseline,
                      "baseline_checkpoint": args.baseline_checkpoint,
                      "resamples": args.resamples,
                      "ferplus_valid": triplet_margins(model, baseline, args.data / "ferplus" / "valid",
                                                       args.resamples, rng),
                      "ckplus48": ckplus_margins(model, baseline, args.data / "ckplus48", args.resamples, rng)},
                     indent=1))


if __name__ == "__main__":
    main()
