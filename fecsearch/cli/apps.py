"""The paper's applications as commands: rank-difference bench, summarize, label, classify, map."""
from __future__ import annotations

import json
from pathlib import Path

import click

from fecsearch.cli.common import echo_json, fail, load, load_network, study_options
from fecsearch.models.config import DEFAULT_MODEL


@click.group()
def bench():
    """The paper's comparisons as commands."""


def ask_people(store, pairs, rater: str, paths: dict, picture: Path) -> None:
    """Terminal rating: shows (as a picture file) the query and two candidates; l / r / s, q to stop."""
    from PIL import Image

    from fecsearch.query.sheets import contact_sheet

    todo = [p for p in pairs if not store.has_vote(*p, rater)]
    click.echo(f"{len(pairs) - len(todo)} of {len(pairs)} pairs answered by {rater}; {len(todo)} to go. "
               f"Each question is drawn in {picture}: query, left, right.")
    keys = {"l": "left", "r": "right", "s": "same"}
    for done, (query, left, right) in enumerate(todo, 1):
        contact_sheet([(Image.open(paths[query]), "query"), (Image.open(paths[left]), "left"),
                       (Image.open(paths[right]), "right")], picture, columns=3)
        answer = click.prompt(f"[{done}/{len(todo)}] closer to {query}: left {left} or right {right}? "
                              f"(l/r/s, q to stop)", type=click.Choice(["l", "r", "s", "q"]), show_choices=False)
        if answer == "q":
            break
        store.add(query, left, right, rater, keys[answer])


@bench.command("rank-diff")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="Face crops: queries and collection come from it (FER+ with label.csv for the votes judge).")
@study_options()
@click.option("--judge", type=click.Choice(["votes", "embedding", "people"]), default="votes", show_default=True,
              help="votes: the candidate whose FER+ vote distribution is closer to the query's wins; "
                   "embedding: the one nearer in --reference; people: the majority of human votes.")
@click.option("--reference", default="affnet-faceres-cl-p", show_default=True,
              help="Model of the embedding judge: by default one of another trunk family than A's and B's, so that "
                   "the judge is neither of the two it judges.")
@click.option("--votes", "votes_db", type=click.Path(path_type=Path), default=Path("votes.db"), show_default=True,
              help="People judge: the SQLite file votes are read from and written to.")
@click.option("--rater", help="People judge: your name; asks every pair you have not answered yet.")
@click.option("--out", type=click.Path(path_type=Path), help="Write the full JSON report here.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write the curve (Figure 6) as an image.")
@click.option("--json", "as_json", is_flag=True)
def rank_diff(data_dir, model_a, model_b, n_queries, max_n, seed, judge, reference, votes_db, rater, out, plot,
              as_json):
    """Rank-difference of embedding A against B for N = 1..max-n (positive: A retrieves better).

    Queries are drawn from DATA with a fixed seed; the collection is the rest of DATA, searched
    with each embedding. With --judge people, each rater answers the pairs in the terminal
    (stored in --votes, resumable); a pair's winner is the majority of its votes.

    \b
    Examples:
      fecsearch bench rank-diff --data ../shared/data/ferplus/valid --plot rank-diff.png
      fecsearch bench rank-diff --data ../shared/data/ferplus/valid --queries 5 --max-n 3 \\
          --judge people --votes votes.db --rater alice
    """
    from fecsearch.evaluation.rankdiff import VoteJudge, plan_study, score_study
    from fecsearch.models.config import MissingWeights

    if judge == "votes" and not (Path(data_dir) / "label.csv").exists():
        fail(f"{data_dir}: the votes judge needs FER+ votes (label.csv); use --judge people or embedding")
    try:
        study = plan_study(data_dir, model_a, model_b, n_queries, max_n, seed)
    except (MissingWeights, KeyError, ValueError) as err:
        fail(str(err).strip("'\""))
    if judge == "votes":
        judge_ = VoteJudge(dict(zip(study.names, study.votes)))
    elif judge == "embedding":
        from fecsearch.evaluation.metrics import embed_paths
        from fecsearch.evaluation.rankdiff import EmbeddingJudge

        judge_ = EmbeddingJudge(dict(zip(study.names, embed_paths(load(reference, None), study.paths))))
    else:
        from fecsearch.store.votes import VoteStore

        judge_ = VoteStore(votes_db)
        pairs = study.pairs()
        if rater:
            ask_people(judge_, pairs, rater, study.path_of(), Path(votes_db).with_suffix(".png"))
        missing = sum(1 for p in pairs if not judge_.has_answer(*p))
        if missing:
            fail(f"{missing} of {len(pairs)} pairs have no vote yet in {votes_db}; answer them with --rater NAME "
                 f"(you can stop with q and resume later) or on the rating page of `fecsearch serve`")
    result = score_study(study, judge_, max_n)
    report = {"data": str(data_dir), "a": model_a, "b": model_b, "judge": judge, "queries": n_queries,
              "collection": len(study.names) - n_queries, "seed": seed, **result.summary()}
    if out:
        Path(out).write_text(json.dumps({**report, "per_query": result.per_query}, indent=1))
    if plot:
        result.plot(plot, f"{model_a} vs {model_b}\n{n_queries} queries, {judge} judge")
    mean, sem = result.mean, result.sem
    if as_json:
        echo_json(report)
        return
    click.echo(f"{model_a} (A) vs {model_b} (B), {n_queries} queries over {len(study.names) - n_queries} faces, "
               f"{judge} judge")
    for n in range(1, max_n + 1):
        click.echo(f"  N={n:2d}  rank-difference {mean[n - 1]:+.3f} ± {sem[n - 1]:.3f}")


@click.command("summarize")
@click.argument("folder", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--index", "index_dir", type=click.Path(exists=True, path_type=Path),
              help="Summarise an index's faces instead of a folder.")
@click.option("-n", "clusters", default=10, show_default=True, help="How many expressions to show.")
@click.option("--sheet", type=click.Path(path_type=Path), help="Contact sheet of one face per cluster.")
@click.option("--model", "model_name", default=None, help=f"Model for FOLDER (default {DEFAULT_MODEL}).")
@click.option("--json", "as_json", is_flag=True)
def summarize_cmd(folder, index_dir, clusters, sheet, model_name, as_json):
    """Album summary: cluster the faces by expression and pick the most typical face of each cluster.

    \b
    Examples:
      fecsearch summarize ../shared/data/photos -n 10 --sheet summary.jpg
      fecsearch summarize --index indexes/default -n 8 --json
    """
    from fecsearch.query.sheets import contact_sheet, face_thumbnail
    from fecsearch.query.summary import summarize

    if (folder is None) == (index_dir is None):
        raise click.UsageError("give either a FOLDER or --index")
    if index_dir:
        from fecsearch.store.database import FaceStore

        store = FaceStore(index_dir, readonly=True)
        ids, vectors = store.embeddings()
        rows = store.faces_by_id(ids)
        faces = [{"path": rows[i]["path"], "box": [rows[i][k] for k in ("x1", "y1", "x2", "y2")], "face_id": int(i),
                  **({"time": rows[i]["time"]} if rows[i]["time"] is not None else {})} for i in ids]
    else:
        from fecsearch.faces.images import find_images
        from fecsearch.models.pipeline import FacePipeline, embed_files

        network = load_network(model_name or DEFAULT_MODEL, None)
        pipeline = FacePipeline(network, device=network.device, runtime=network.runtime)
        embedded = embed_files(pipeline, find_images(folder)[0], batch_size=1)
        for s in embedded.skipped:
            click.echo(f"skipped {s}", err=True)
        faces = [{"path": path, "box": list(box)} for path, box in zip(embedded.paths, embedded.boxes)]
        vectors = embedded.vectors
    if not len(faces):
        fail("no faces to summarise")
    groups = summarize(vectors, clusters)
    summary = [{**faces[g["representative"]], "cluster_size": len(g["members"])} for g in groups]
    if sheet:
        tiles = [(face_thumbnail(s["path"], s["box"], time=s.get("time")),
                  f"{Path(s['path']).stem[:10]} ({s['cluster_size']})")
                 for s in summary]
        contact_sheet(tiles, sheet, columns=min(5, len(tiles)), outline_first=False)
    if as_json:
        echo_json({"faces": len(faces), "clusters": summary})
        return
    click.echo(f"{len(faces)} faces in {len(summary)} expression clusters:")
    for s in summary:
        click.echo(f"  {s['cluster_size']:4d} faces, e.g. {s['path']} {[round(v) for v in s['box']]}")
    if sheet:
        click.echo(f"sheet: {sheet}")


@click.command("label")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--ferplus", "ferplus_dir", type=click.Path(exists=True, path_type=Path),
              help="A FER+ folder: each image gets its majority emotion from label.csv.")
@click.option("--folders", "folders_dir", type=click.Path(exists=True, path_type=Path),
              help="A folder per class: each image gets its folder's name.")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CSV with columns path,label.")
@click.option("--json", "as_json", is_flag=True)
def label_cmd(index_dir, ferplus_dir, folders_dir, csv_path, as_json):
    """Attach labels to indexed faces, for classify, map and the label judge.

    \b
    Example:
      fecsearch label --index indexes/fer-train --ferplus ../shared/data/ferplus/train
    """
    import csv
    import os

    from fecsearch.data.labels import read_class_folders, read_ferplus
    from fecsearch.models.config import EMOTIONS
    from fecsearch.store.database import FaceStore

    if sum(x is not None for x in (ferplus_dir, folders_dir, csv_path)) != 1:
        raise click.UsageError("give one of --ferplus, --folders or --csv")
    by_name = ferplus_dir is not None  # FER+ file names are unique ids: any copy of the folder matches
    if csv_path:
        with open(csv_path, newline="") as f:
            labels = {os.path.abspath(r["path"]): r["label"] for r in csv.DictReader(f)}
        source = str(csv_path)
    else:
        faces = read_ferplus(ferplus_dir) if ferplus_dir else read_class_folders(folders_dir)
        labels = {(p.name if by_name else os.path.abspath(p)): EMOTIONS[c] for p, c in zip(faces.paths, faces.labels)}
        source = str(ferplus_dir or folders_dir)
    count = FaceStore(index_dir, create=False).set_labels(labels, source, by_name)
    if as_json:
        echo_json({"labelled_faces": count, "labels": len(labels), "source": source})
        return
    click.echo(f"labelled {count} faces from {len(labels)} labels ({source})")


@click.command("classify")
@click.argument("image", type=click.Path(exists=True, path_type=Path))
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="An index with labels (see `fecsearch label`).")
@click.option("-k", default=200, show_default=True)
@click.option("--face", "face_number", type=int, help="Which face of IMAGE; default the largest.")
@click.option("--cropped", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def classify_cmd(image, index_dir, k, face_number, cropped, as_json):
    """K-NN emotion of a face: the share of each label among its K nearest labelled faces.

    \b
    Example:
      fecsearch classify smile.jpg --index indexes/fer-train -k 200
    """
    from fecsearch.query.search import Searcher

    searcher = Searcher(index_dir)
    try:
        scores, votes = searcher.classify(searcher.query_image(image, face=face_number, cropped=cropped).vector, k)
    except LookupError as err:
        fail(str(err).strip("'\""))
    best = max(scores, key=scores.get)
    if as_json:
        echo_json({"image": str(image), "label": best, "scores": scores, "neighbours": votes})
        return
    click.echo(f"{image}: {best}  ({votes} labelled neighbours)")
    for n, v in sorted(scores.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {n:10} {v:.3f}")


@click.command("map")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--max-faces", default=5000, show_default=True, help="Sample this many faces at most.")
@click.option("--thumbnails", is_flag=True, help="Draw small face images instead of dots.")
@click.option("--seed", default=0, show_default=True)
def map_cmd(index_dir, out, max_faces, thumbnails, seed):
    """A 2-D t-SNE map of an index's faces, coloured by label where there are labels (Figure 5).

    \b
    Example:
      fecsearch map --index indexes/fer-valid --out map.png
    """
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    from fecsearch.store.database import FaceStore

    store = FaceStore(index_dir, readonly=True)
    ids, vectors = store.embeddings()
    rng = np.random.default_rng(seed)
    if len(ids) > max_faces:
        keep = np.sort(rng.choice(len(ids), max_faces, replace=False))
        ids, vectors = ids[keep], vectors[keep]
    xy = TSNE(2, init="pca", random_state=seed, perplexity=min(30, max(2, len(ids) - 1) / 3)).fit_transform(vectors)
    labels = store.labels()
    fig, ax = plt.subplots(figsize=(9, 9))
    if thumbnails:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        from fecsearch.query.sheets import face_thumbnail

        rows = store.faces_by_id(ids)
        for (x, y), i in zip(xy, ids):
            r = rows[int(i)]
            thumb = face_thumbnail(r["path"], (r["x1"], r["y1"], r["x2"], r["y2"]), size=32, time=r.get("time"))
            ax.add_artist(AnnotationBbox(OffsetImage(np.asarray(thumb), zoom=0.7), (x, y), frameon=False))
        ax.set(xlim=(xy[:, 0].min() - 5, xy[:, 0].max() + 5), ylim=(xy[:, 1].min() - 5, xy[:, 1].max() + 5))
    else:
        names = [labels.get(int(i), "unlabelled") for i in ids]
        for name in sorted(set(names)):
            mask = np.array([n == name for n in names])
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, label=f"{name} ({mask.sum()})")
        ax.legend(markerscale=3, fontsize=8)
    ax.set(title=f"t-SNE of {len(ids)} faces, model {store.meta('model')}", xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    click.echo(f"wrote {out}")


@click.group()
def votes():
    """People's votes for `bench rank-diff --judge people`: export and import as CSV."""


@votes.command("export")
@click.option("--votes", "votes_db", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
def votes_export(votes_db, out):
    """Write all votes as CSV (query, left, right, rater, answer, created_at)."""
    from fecsearch.store.votes import VoteStore

    click.echo(f"exported {VoteStore(votes_db).export_csv(out)} votes to {out}")


@votes.command("import")
@click.option("--votes", "votes_db", required=True, type=click.Path(path_type=Path))
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def votes_import(votes_db, csv_path):
    """Add votes from a CSV written by `votes export` (a rater's newer vote on a pair replaces theirs)."""
    from fecsearch.store.votes import VoteStore

    click.echo(f"imported {VoteStore(votes_db).import_csv(csv_path)} votes into {votes_db}")
