"""How good is a classifier's predicted vote distribution as an expression space, alone and beside
FECNet's embedding? FER+ valid's 6,000 vote triplets (seed 2019), every vector a mirror average.

    uv run python benchmarks/probe_teacher.py fecsearch/weights/affnet-lite-cl.safetensors trunk-votes.safetensors

For each classifier checkpoint: triplet accuracy of its softmax distributions by L1 (twice the
total-variation distance that defines the triplets), L2 and cosine; then the shipped
fecnet-lite-16d vector concatenated with sqrt(w) * sqrt(p) (the square roots of the probabilities,
so that L2 distance between them is the Hellinger distance) for several weights w. The weight is
read off the same set it is scored on, so the best row is an upper bound, not a result.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fecsearch.data.labels import read_ferplus
from fecsearch.data.triplets import validation_triplets
from fecsearch.evaluation.metrics import triplet_accuracy
from fecsearch.models.config import get_config
from fecsearch.models.preprocess import load_prepared
from fecsearch.models.registry import create_model
from fecsearch.train.fecnet import teacher_distributions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus" / "valid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("classifiers", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4])
    args = parser.parse_args()
    valid = read_ferplus(args.data)
    names = [str(p) for p in valid.paths]
    triplets = validation_triplets(valid)
    faces = load_prepared(valid.paths, get_config("fecnet-lite-16d").preprocess)
    fecnet = create_model("fecnet-lite-16d")
    with torch.inference_mode():
        e = (fecnet(faces) + fecnet(faces.flip(3))).numpy()
    e /= np.linalg.norm(e, axis=1, keepdims=True)

    def score(vectors, distances=("l2",)) -> dict:
        acc = triplet_accuracy(dict(zip(names, vectors)), triplets, distances)
        return {d: round(acc[d]["overall"], 4) for d in distances}

    print(json.dumps({"fecnet-lite-16d": score(e)}))
    for checkpoint in args.classifiers:
        p = teacher_distributions(checkpoint, faces).mean(0).numpy()
        row = {"classifier": str(checkpoint), "majority_accuracy": round(float((p.argmax(1) == valid.labels).mean()), 4),
               "distributions": score(p, ("l1", "l2", "cosine")),
               "beside_fecnet": {w: score(np.concatenate([e, np.sqrt(w * p)], 1))["l2"] for w in args.weights}}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
