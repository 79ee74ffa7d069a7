"""An ensemble of FECNets against as many classifiers: how much of its lead over one classifier is
the extra networks, which any embedding could add?

    uv run python benchmarks/pair_baseline.py --model fecnet-lite-x2-pair-32d --classifier affnet-x2-s1.safetensors
    uv run python benchmarks/pair_baseline.py --model fecnet-lite-x2-pair-faceres-48d \\
        --classifier affnet-faceres-cl-p=affnet-faceres-whole.safetensors --out benchmarks/mixed_baseline.json

The shipped baseline `affnet-lite-x2-cl` (seed 0) is the first classifier; each --classifier adds
one: a checkpoint of it trained by the same recipe with another seed, or NAME=CHECKPOINT, a
classifier on another trunk (the FaceRes one under the three-network model):

    uv run fecsearch train affnet --model affnet-lite-x2-cl-p --train ../shared/data/ferplus/train \\
        --valid ../shared/data/ferplus/valid --epochs 15 --bf16 --seed 1 --out affnet-x2-s1.safetensors

Each classifier's penultimate layer is taken as a unit vector (cosine, its best distance on the
vote triplets). The classifiers together are their vectors side by side over the square root of
their number, as an ensemble model joins its networks: its squared distances are their mean.
Measured on FER+ valid and CK+48 (each model with the mirror average its indexes use): vote
triplets, CK+48 precision@5, K-NN (K=200) mean AUC with FER+ train as the labelled set, and
`bench rank-diff`'s study (200 queries of FER+ valid, the votes judge and each --reference's embedding) of
--model against one classifier and against the classifiers together.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from fecsearch.data.labels import read_class_folders, read_labelled
from fecsearch.data.triplets import validation_triplets
from fecsearch.evaluation.metrics import (embed_paths, knn_auc, knn_scores, subject_independent_retrieval, subject_of,
                                          triplet_accuracy)
from fecsearch.evaluation.rankdiff import EmbeddingJudge, VoteJudge, plan_study, score_study
from fecsearch.models.config import DEFAULT_MODEL, EMOTIONS
from fecsearch.models.registry import create_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BASELINE = "affnet-lite-x2-cl-p"


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def embedder(name: str, checkpoint: Path | None = None):
    """The model with the mirror average its indexes use (every model's but the three-network one's)."""
    return create_model(name, checkpoint=checkpoint)


def classifier(spec: str) -> tuple[str, Path]:
    """(model name, checkpoint) of a --classifier: CHECKPOINT of the baseline, or NAME=CHECKPOINT."""
    name, _, path = spec.rpartition("=")
    return name or BASELINE, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the FECNet ensemble compared")
    parser.add_argument("--classifier", action="append", required=True,
                        help=f"a classifier besides the shipped {BASELINE}: CHECKPOINT (of it) or NAME=CHECKPOINT")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reference", action="append",
                        help="a model whose embedding judges the rank-difference study (repeatable; default "
                             "affnet-faceres-cl-p); one of another trunk family than --model keeps the judge apart")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "pair_baseline.json")
    args = parser.parse_args()
    valid, train = read_labelled(DATA / "ferplus" / "valid"), read_labelled(DATA / "ferplus" / "train")
    ck = read_class_folders(DATA / "ckplus48")
    triplets = validation_triplets(valid)
    subjects = [subject_of(p) for p in ck.paths]
    fecnet = args.model
    models = {fecnet: embedder(fecnet), "classifier-s0": embedder(BASELINE)}
    for i, spec in enumerate(args.classifier, start=1):
        models[f"classifier-s{i}"] = embedder(*classifier(spec))
    vectors = {}
    for name, model in models.items():
        vectors[name] = {part: unit(embed_paths(model, faces.paths))
                         for part, faces in (("valid", valid), ("train", train), ("ck", ck))}
        print(f"embedded {name}", flush=True)
    joined = [name for name in vectors if name.startswith("classifier-s")]
    vectors["classifier-pair"] = {part: np.concatenate([vectors[n][part] for n in joined], 1) / np.sqrt(len(joined))
                                  for part in ("valid", "train", "ck")}
    report = {"command": shlex.join(["python", "benchmarks/pair_baseline.py", *sys.argv[1:]]), "models": {}}
    for name, v in vectors.items():
        acc = triplet_accuracy(dict(zip(map(str, valid.paths), v["valid"])), triplets, ("l2",))["l2"]
        knn = knn_auc(knn_scores(v["train"], train.labels, v["valid"], 200, len(EMOTIONS), "l2"), valid.labels,
                      EMOTIONS)
        ckr = subject_independent_retrieval(v["ck"], ck.labels, subjects, 5, "l2")
        report["models"][name] = {"vote_triplets": round(acc["overall"] * 100, 2),
                                  "one_class": round(acc["ONE_CLASS_TRIPLET"] * 100, 2),
                                  "knn_mean_auc": round(knn["mean_auc"] * 100, 2),
                                  "ckplus_p_at_5": round(ckr["precision_at_top"] * 100, 2)}
        print(name, report["models"][name], flush=True)

    # The rank-difference study on FER+ valid, the vectors above standing in for the models.
    by_path = {name: dict(zip(map(str, valid.paths), v["valid"])) for name, v in vectors.items()}

    def embed(name, paths):
        return np.stack([by_path[name][str(p)] for p in paths]), "l2"

    references = {name: embedder(name) for name in (args.reference or ["affnet-faceres-cl-p"])}
    report["rank_difference"] = {}
    for other in ("classifier-s0", "classifier-pair"):
        study = plan_study(DATA / "ferplus" / "valid", fecnet, other, args.queries, embed=embed)
        judges = {"votes": VoteJudge(dict(zip(study.names, study.votes)))}
        for name, reference in references.items():
            judges[name] = EmbeddingJudge(dict(zip(study.names, embed_paths(reference, study.paths))))
        for judge_name, judge in judges.items():
            result = score_study(study, judge, 10).summary()
            report["rank_difference"][f"{fecnet} vs {other}, {judge_name} judge"] = result
            print(other, judge_name, json.dumps(result), flush=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
