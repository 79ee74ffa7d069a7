"""Measure the shipped models side by side: speed and the paper's three evaluations.

    python benchmarks/bench_models.py [--model NAME ...] [--skip-knn] [--no-mirror]

For each model: faces/s embedding FER+ valid crops (preparation and the network, mirror average
included) with the network a new `index --cropped` uses (ONNX Runtime; its int8 graph where the
model has one: `faces_per_second`) and with torch (`faces_per_second_torch`, the network training
evaluates), FER+ valid vote-triplet accuracy (6,000 triplets,
seed 2019; L2 for FECNet models, the best of L1/L2/cosine for the others), K-NN (K=200) mean
AUC-ROC (FER+ train -> valid) and CK+48 subject-independent precision@5. Speed is also given as a
ratio to fecnet-lite-16d measured in the same run. Writes fecsearch/weights/measured.json, which
`fecsearch models` shows.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "fecsearch" / "weights" / "measured.json"
SHIPPED = ["fecnet-lite-x2-pair-faceres-48d-v2", "fecnet-lite-x2-pair-faceres-48d", "fecnet-lite-x2-pair-32d", "affnet-lite-x2-cl-p", "fecnet-lite-16d",
           "affnet-lite-cl-p", "fecnet-faceres-16d", "affnet-faceres-cl-p"]


def faces_per_second(network, preprocess, paths, repeat: int = 3) -> float:
    from fecsearch.models.preprocess import load_prepared

    network.embed(load_prepared(paths[:64], preprocess))  # warm-up
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        network.embed(load_prepared(paths, preprocess))
        best = max(best, len(paths) / (time.perf_counter() - t0))
    return best


def index_network(name: str, mirror_average: bool):
    """The network a new `index --cropped` embeds with here: the default runtime and precision."""
    from fecsearch.models.inference import load_inference

    return load_inference(name, mirror_average=mirror_average, precision="auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="repeatable; default: every shipped model")
    parser.add_argument("--skip-knn", action="store_true", help="K-NN embeds all of FER+ train: the slow part")
    parser.add_argument("--no-mirror", action="store_true")
    parser.add_argument("--speed-faces", type=int, default=2000)
    args = parser.parse_args()
    from fecsearch.data.labels import read_class_folders, read_ferplus, read_labelled
    from fecsearch.data.triplets import validation_triplets
    from fecsearch.evaluation.metrics import (embed_paths, knn_auc, knn_scores, subject_independent_retrieval,
                                              subject_of, triplet_accuracy)
    from fecsearch.models import EMOTIONS, create_model, get_config
    from fecsearch.models.config import weights_path

    torch.set_num_threads(2)
    valid = read_ferplus(DATA / "ferplus" / "valid")
    triplets = validation_triplets(valid)
    train = None if args.skip_knn else read_labelled(DATA / "ferplus" / "train")
    valid_labelled = read_labelled(DATA / "ferplus" / "valid")
    ck = read_class_folders(DATA / "ckplus48")
    names = args.model or [m for m in SHIPPED if weights_path(get_config(m)).exists()]
    if "fecnet-lite-16d" not in names:
        names = ["fecnet-lite-16d"] + names  # the speed baseline
    measured = json.loads(OUT.read_text()) if OUT.exists() else {}
    speed_paths = valid.paths[:args.speed_faces]
    for name in names:
        model = create_model(name)
        mirror = model.config.mirror_average and not args.no_mirror  # as the model's indexes embed
        model.config = replace(model.config, mirror_average=mirror)
        preprocess = model.config.preprocess
        network = index_network(name, mirror)
        row = {"faces_per_second": round(faces_per_second(network, preprocess, speed_paths), 1),
               "index_runtime": f"{network.runtime} {getattr(network, 'precision', 'fp32')}",
               "faces_per_second_torch": round(faces_per_second(model.for_inference(), preprocess, speed_paths), 1)}
        vectors = embed_paths(model, valid.paths)
        acc = triplet_accuracy(dict(zip(map(str, valid.paths), vectors)), triplets)
        distances = ["l2"] if model.config.family == "fecnet" else ["l1", "l2", "cosine"]
        best = max(distances, key=lambda d: acc[d]["overall"])
        row["triplet_accuracy"] = round(acc[best]["overall"], 4)
        row["triplet_distance"] = best
        row["triplet_by_type"] = {k: round(v, 4) for k, v in acc[best].items() if k != "overall"}
        ck_vectors = embed_paths(model, ck.paths)
        row["ckplus_precision_at_5"] = round(subject_independent_retrieval(
            ck_vectors, ck.labels, [subject_of(p) for p in ck.paths], 5, model.config.distance)["precision_at_top"], 4)
        if train is not None:
            scores = knn_scores(embed_paths(model, train.paths), train.labels, embed_paths(model, valid_labelled.paths),
                                200, len(EMOTIONS), model.config.distance)
            row["knn_mean_auc"] = round(knn_auc(scores, valid_labelled.labels, EMOTIONS)["mean_auc"], 4)
        row["mirror_average"] = mirror
        measured[name] = {**measured.get(name, {}), **row}
        print(name, json.dumps(row), flush=True)
    base = measured["fecnet-lite-16d"]["faces_per_second"]
    for name in names:
        measured[name]["speed_vs_fecnet_lite"] = round(measured[name]["faces_per_second"] / base, 3)
    command = shlex.join(["python", "benchmarks/bench_models.py", *sys.argv[1:]])
    measured["_run"] = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, "
                        f"{torch.get_num_threads()} torch threads", "command": command}
    OUT.write_text(json.dumps(measured, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
