"""`fecsearch eval`: the paper's evaluations of a model on labelled faces (triplets, K-NN, retrieval)."""
from __future__ import annotations

from pathlib import Path

import click

from fecsearch.cli.common import echo_json, load
from fecsearch.models.config import DEFAULT_BASELINE, DEFAULT_MODEL, classifiers_of


@click.group("eval")
def evaluate():
    """The paper's evaluations: triplet accuracy, K-NN emotion AUC, cross-dataset retrieval."""


def mirror_option(f):
    """--mirror and --precision: how the faces are embedded, as an index would embed them."""
    f = click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
                     help="int8: the model's int8 graph in ONNX Runtime, as indexes built with it embed.")(f)
    return click.option("--mirror/--no-mirror", "mirror", default=None,
                        help="Embed each face and its mirror image and average them (default: as the model's "
                             "indexes do).")(f)


def mirror_reported(mirror: bool | None):
    return "as each model's indexes embed" if mirror is None else mirror


def compared_models(f):
    """--model (repeatable), --checkpoint and --mirror, shared by the evaluations that compare models."""
    f = mirror_option(f)
    f = click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
                     help="Weights (with one --model).")(f)
    return click.option("--model", "model_names", multiple=True, default=[DEFAULT_MODEL, DEFAULT_BASELINE],
                        show_default=True, help="Repeat to compare models.")(f)


@evaluate.command("triplets")
@click.option("--model", "model_names", multiple=True, default=[DEFAULT_MODEL, *classifiers_of(DEFAULT_MODEL)],
              show_default=True, help="Repeat to compare models.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Weights (with one --model).")
@mirror_option
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="FER+ folder with label.csv.")
@click.option("--count", default=6000, show_default=True)
@click.option("--seed", default=2019, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_triplets(model_names, checkpoint, mirror, precision, data_dir, count, seed, as_json):
    """Triplet prediction accuracy, overall and per type, with L1, L2 and cosine distances.

    \b
    Example:
      fecsearch eval triplets --data ../shared/data/ferplus/valid
    """
    from fecsearch.data.labels import read_ferplus
    from fecsearch.data.triplets import ferplus_vote_triplets
    from fecsearch.evaluation.metrics import embed_paths, triplet_accuracy

    faces = read_ferplus(data_dir)
    triplets = ferplus_vote_triplets(faces, count, seed=seed)
    report = {"data": str(data_dir), "seed": seed, "triplets": len(triplets), "mirror": mirror_reported(mirror),
              "precision": precision, "models": {}}
    for name in model_names:
        model = load(name, checkpoint, mirror, precision)
        vectors = embed_paths(model, faces.paths)
        acc = triplet_accuracy(dict(zip(map(str, faces.paths), vectors)), triplets)
        acc.pop("triplets")
        report["models"][name] = acc
    if as_json:
        echo_json(report)
        return
    click.echo(f"{len(triplets)} FER+ vote triplets from {data_dir} (seed {seed})")
    click.echo(f"{'model':18} {'dist':6} {'overall':>8} {'one':>7} {'two':>7} {'three':>7}")
    for name, acc in report["models"].items():
        for dist, row in acc.items():
            click.echo(f"{name:18} {dist:6} {row['overall']:8.3f} {row.get('ONE_CLASS_TRIPLET', 0):7.3f} "
                       f"{row.get('TWO_CLASS_TRIPLET', 0):7.3f} {row.get('THREE_CLASS_TRIPLET', 0):7.3f}")


@evaluate.command("knn")
@compared_models
@click.option("--labelled", "labelled_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="The labelled set the neighbours come from.")
@click.option("--test", "test_dir", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-k", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_knn(model_names, checkpoint, mirror, precision, labelled_dir, test_dir, k, as_json):
    """K-NN emotion classification: per-class and mean one-vs-rest AUC-ROC, top-1 accuracy (Table 4).

    \b
    Example:
      fecsearch eval knn --labelled ../shared/data/ferplus/train --test ../shared/data/ferplus/valid
    """
    from fecsearch.data.labels import read_labelled
    from fecsearch.evaluation.metrics import embed_paths, knn_auc, knn_scores
    from fecsearch.models.config import EMOTIONS

    labelled, test = read_labelled(labelled_dir), read_labelled(test_dir)
    report = {"labelled": str(labelled_dir), "test": str(test_dir), "k": k, "mirror": mirror_reported(mirror),
              "precision": precision, "models": {}}
    for name in model_names:
        model = load(name, checkpoint, mirror, precision)
        a, b = embed_paths(model, labelled.paths), embed_paths(model, test.paths)
        scores = knn_scores(a, labelled.labels, b, k, len(EMOTIONS), model.config.distance)
        report["models"][name] = knn_auc(scores, test.labels, EMOTIONS)
    if as_json:
        echo_json(report)
        return
    for name, r in report["models"].items():
        per = " ".join(f"{c}={v * 100:.1f}" for c, v in r["auc_per_class"].items())
        click.echo(f"{name:18} mean AUC {r['mean_auc'] * 100:.1f}  top-1 {r['top1_accuracy'] * 100:.1f}%  [{per}]")


@evaluate.command("retrieval")
@compared_models
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder per class with CK+ file names (S<subject>_<seq>_<frame>.png).")
@click.option("--top", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def eval_retrieval(model_names, checkpoint, mirror, precision, data_dir, top, as_json):
    """Subject-independent retrieval: how many of the top faces, other people only, share the expression.

    \b
    Example:
      fecsearch eval retrieval --data ../shared/data/ckplus48
    """
    from fecsearch.data.labels import read_class_folders
    from fecsearch.evaluation.metrics import embed_paths, subject_independent_retrieval, subject_of

    faces = read_class_folders(data_dir)
    subjects = [subject_of(p) for p in faces.paths]
    report = {"data": str(data_dir), "mirror": mirror_reported(mirror), "precision": precision, "models": {}}
    for name in model_names:
        model = load(name, checkpoint, mirror, precision)
        vectors = embed_paths(model, faces.paths)
        report["models"][name] = subject_independent_retrieval(vectors, faces.labels, subjects, top,
                                                               model.config.distance)
    if as_json:
        echo_json(report)
        return
    for name, r in report["models"].items():
        click.echo(f"{name:18} expression in top {top}: {r['precision_at_top'] * 100:.1f}% "
                   f"(chance {r['chance'] * 100:.1f}%, {r['queries']} queries)")
