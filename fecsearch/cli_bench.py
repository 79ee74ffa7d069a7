"""`fecsearch bench ...`: repeatable versions of the paper's studies."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from .cli import echo_json, main
from .cli_models import load


@main.group()
def bench():
    """The paper's comparisons as commands."""


def nearest(vectors: np.ndarray, queries: np.ndarray, k: int, distance: str) -> np.ndarray:
    import faiss

    from .vector_index import normalise

    if distance == "cosine":
        vectors, queries = normalise(vectors), normalise(queries)
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, np.float32))
    return index.search(np.ascontiguousarray(queries, np.float32), k)[1]


@bench.command("rank-diff")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, path_type=Path),
              help="FER+ folder with label.csv: queries and collection come from it.")
@click.option("--a", "model_a", default="fecnet-lite-16d", show_default=True, help="Embedding A.")
@click.option("--b", "model_b", default="affnet-lite-cl-p", show_default=True, help="Embedding B.")
@click.option("--queries", "n_queries", default=100, show_default=True)
@click.option("--max-n", default=10, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--judge", type=click.Choice(["votes"]), default="votes", show_default=True,
              help="votes: the candidate whose FER+ vote distribution is closer to the query's wins.")
@click.option("--out", type=click.Path(path_type=Path), help="Write the full JSON report here.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write the curve (Figure 6) as an image.")
@click.option("--json", "as_json", is_flag=True)
def rank_diff(data_dir, model_a, model_b, n_queries, max_n, seed, judge, out, plot, as_json):
    """Rank-difference of embedding A against B for N = 1..max-n (positive: A retrieves better).

    Queries are drawn from DATA with a fixed seed; the collection is the rest of DATA, searched
    with each embedding.

    \b
    Example:
      fecsearch bench rank-diff --data ../shared/data/ferplus/valid --plot rank-diff.png
    """
    from .evaluate import embed_paths
    from .labels import read_ferplus
    from .rankdiff import VoteJudge, rank_difference_curve

    faces = read_ferplus(data_dir)
    rng = np.random.default_rng(seed)
    query_idx = np.sort(rng.choice(len(faces), n_queries, replace=False))
    collection = np.setdiff1d(np.arange(len(faces)), query_idx)
    names = [p.name for p in faces.paths]
    judge_ = VoteJudge({names[i]: faces.votes[i] for i in range(len(faces))})
    ranked = {}
    for key, name in (("a", model_a), ("b", model_b)):
        model = load(name, None)
        vectors = embed_paths(model, faces.paths)
        hits = nearest(vectors[collection], vectors[query_idx], max_n, model.config.distance)
        ranked[key] = [[names[collection[j]] for j in row] for row in hits]
    per_query = []
    for qi, q in enumerate(query_idx):
        curve = rank_difference_curve(names[q], ranked["a"][qi], ranked["b"][qi], judge_.compare, max_n)
        per_query.append({"query": names[q], "curve": curve, "a": ranked["a"][qi], "b": ranked["b"][qi]})
    mean = np.mean([r["curve"] for r in per_query], axis=0)
    sem = np.std([r["curve"] for r in per_query], axis=0, ddof=1) / np.sqrt(len(per_query))
    report = {"data": str(data_dir), "a": model_a, "b": model_b, "judge": judge, "queries": n_queries,
              "collection": int(len(collection)), "seed": seed,
              "mean_by_n": {str(n): round(float(v), 4) for n, v in zip(range(1, max_n + 1), mean)},
              "sem_by_n": {str(n): round(float(v), 4) for n, v in zip(range(1, max_n + 1), sem)}}
    if out:
        Path(out).write_text(json.dumps({**report, "per_query": per_query}, indent=1))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ns = np.arange(1, max_n + 1)
        ax.errorbar(ns, mean, yerr=sem, marker="o", capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="N (faces retrieved per embedding)", ylabel="rank-difference",
               title=f"{model_a} vs {model_b}\n{n_queries} queries, {judge} judge", ylim=(-1, 1))
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
    if as_json:
        echo_json(report)
        return
    click.echo(f"{model_a} (A) vs {model_b} (B), {n_queries} queries over {len(collection)} faces, {judge} judge")
    for n in range(1, max_n + 1):
        click.echo(f"  N={n:2d}  rank-difference {mean[n - 1]:+.3f} ± {sem[n - 1]:.3f}")
