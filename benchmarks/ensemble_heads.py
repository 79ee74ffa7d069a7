"""An ensemble of FECNet heads: each checkpoint's unit vectors concatenated and divided by the
square root of their number (a unit vector again, whose squared distances are the mean of the
heads'), measured like one model on FER+ vote triplets, K-NN AUC and CK+48 retrieval.

    uv run python benchmarks/ensemble_heads.py fecsearch/weights/fecnet-lite-16d.safetensors other.safetensors
    uv run python benchmarks/ensemble_heads.py fecnet-lite-x2-pair-32d fecnet-faceres-16d=fecnet-faceres.safetensors

A member is a checkpoint of --model, a shipped model's name, or NAME=CHECKPOINT (models of different
trunks together). A member that is itself an ensemble of n networks counts as n of them: every
network weighs the same in the mean of squared distances. Every member and the ensemble are reported
in the same run, each embedded as its indexes embed (mirror average or not, the model's choice).

--subsets reports every combination of the networks instead: what each adds to the others.

    uv run python benchmarks/ensemble_heads.py fecnet-lite-x2-pair-faceres-48d --subsets
"""
from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fecsearch.data.labels import read_class_folders, read_labelled
from fecsearch.data.triplets import validation_triplets
from fecsearch.evaluation.metrics import (embed_paths, knn_auc, knn_scores, subject_independent_retrieval, subject_of,
                                          triplet_accuracy)
from fecsearch.models.config import EMOTIONS, list_models
from fecsearch.models.registry import create_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def measure(vectors: dict[str, np.ndarray], valid, triplets, ck_labels, ck_subjects) -> dict:
    """vectors: 'valid', 'train' and 'ck' embeddings of one model (or ensemble)."""
    acc = triplet_accuracy(dict(zip([str(p) for p in valid.paths], vectors["valid"])), triplets, ("l2",))["l2"]
    ck = subject_independent_retrieval(vectors["ck"], ck_labels, ck_subjects, 5, "l2")
    report = {"vote_triplets": round(acc["overall"] * 100, 1), "one_class": round(acc["ONE_CLASS_TRIPLET"] * 100, 1),
              "ckplus_p_at_5": round(ck["precision_at_top"] * 100, 1)}
    if len(vectors["train"]):
        scores = knn_scores(vectors["train"], vectors["train_labels"], vectors["valid"], 200, len(EMOTIONS), "l2")
        report["knn_mean_auc"] = round(knn_auc(scores, valid.labels, EMOTIONS)["mean_auc"] * 100, 1)
    return report


def member(spec: str, default_model: str) -> tuple[str, str | None]:
    """(model name, checkpoint or None for its shipped weights) of a command-line member."""
    if "=" in spec:
        name, checkpoint = spec.split("=", 1)
        return name, checkpoint
    if spec in list_models():
        return spec, None
    return default_model, spec


def subsets(each, networks, specs, valid, train, triplets, ck_labels, ck_subjects) -> dict:
    """Every non-empty combination of the single networks inside the members, measured as an
    ensemble of them. A member of n networks holds n unit vectors side by side over sqrt(n)."""
    single = {}
    for vectors, n, spec in zip(each, networks, specs):
        for i in range(n):
            label = f"{spec}[{i}]" if n > 1 else spec
            single[label] = {k: np.split(vectors[k], n, axis=1)[i] * np.sqrt(n) for k in ("valid", "train", "ck")}
    report = {}
    for size in range(1, len(single) + 1):
        for names in itertools.combinations(single, size):
            joined = {k: np.concatenate([single[n][k] for n in names], 1) / np.sqrt(size)
                      for k in ("valid", "train", "ck")}
            joined["train_labels"] = train.labels
            label = " + ".join(names)
            report[label] = measure(joined, valid, triplets, ck_labels, ck_subjects)
            print(json.dumps({label: report[label]}), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoints", nargs="+", help="CHECKPOINT (of --model), MODEL or MODEL=CHECKPOINT")
    parser.add_argument("--model", default="fecnet-lite-16d")
    parser.add_argument("--subsets", action="store_true", help="measure every combination of the networks")
    parser.add_argument("--mirror", action="store_true", help="embed every member with the mirror average")
    parser.add_argument("--skip-knn", action="store_true", help="no K-NN AUC (it embeds all of FER+ train)")
    args = parser.parse_args()
    valid, train = read_labelled(DATA / "ferplus" / "valid"), read_labelled(DATA / "ferplus" / "train")
    ck = read_class_folders(DATA / "ckplus48")
    triplets = validation_triplets(valid)
    subjects = [subject_of(p) for p in ck.paths]
    each, networks = [], []
    report = {}
    for spec in args.checkpoints:
        name, checkpoint = member(spec, args.model)
        model = create_model(name, checkpoint=checkpoint)
        if args.mirror:
            model.config = replace(model.config, mirror_average=True)
        vectors = {"valid": embed_paths(model, valid.paths),
                   "train": (np.zeros((0, model.config.embedding_size), np.float32) if args.skip_knn
                             else embed_paths(model, train.paths)),
                   "ck": embed_paths(model, ck.paths), "train_labels": train.labels}
        each.append(vectors)
        networks.append(model.config.members)
        label = Path(checkpoint).name if checkpoint else name
        report[label] = measure(vectors, valid, triplets, ck.labels, subjects)
        print(json.dumps({label: report[label]}), flush=True)
    if args.subsets:
        report["subsets"] = subsets(each, networks, args.checkpoints, valid, train, triplets, ck.labels, subjects)
    # each member's unit vectors weighted by the share of the networks it holds
    weights = np.sqrt(np.array(networks) / sum(networks))
    joined = {k: np.concatenate([v[k] * w for v, w in zip(each, weights)], 1) for k in ("valid", "train", "ck")}
    joined["train_labels"] = train.labels
    report["ensemble"] = measure(joined, valid, triplets, ck.labels, subjects)
    report["ensemble"]["dim"] = int(joined["valid"].shape[1])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
