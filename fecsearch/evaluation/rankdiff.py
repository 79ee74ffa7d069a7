"""The paper's pairwise rank-difference protocol (section 5.7, Figure 6).

For a query and each N, the N nearest faces under embedding A and under embedding B are pooled
(2N entries). Every pair of entries is judged: which face's expression is closer to the query's.
The winner scores +1, the loser -1, a tie 0 each. Entries are ranked by total score (rank 1 best;
tied entries share the mean of their ranks) and

    rank-difference = (mean rank of B's entries - mean rank of A's entries) / N

which lies in [-1, 1]: +1 when every A entry ranks above every B entry, positive when A is better.

A face retrieved by both embeddings is two entries, one in each list. Judged against itself it is
a tie, so both entries get the same score and the same rank: the face adds the same to both
means and moves the metric neither way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Protocol, Sequence

import numpy as np

from fecsearch.data.triplets import tv_distance
from fecsearch.evaluation import STUDY_MAX_N, STUDY_QUERIES, STUDY_SEED
from fecsearch.vectors.metrics import nearest

Face = Hashable


class Judge(Protocol):
    def compare(self, query: Face, first: Face, second: Face) -> int:
        """+1 if `first` looks closer in expression to `query`, -1 if `second` does, 0 for a tie."""


def average_ranks(scores: Sequence[float]) -> np.ndarray:
    """Ranks by descending score, 1 = best; ties share the mean of the ranks they span."""
    scores = np.asarray(scores, float)
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores))
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_difference(query: Face, from_a: Sequence[Face], from_b: Sequence[Face],
                    compare: Callable[[Face, Face, Face], int]) -> float:
    """The metric for one query and N = len(from_a) = len(from_b)."""
    n = len(from_a)
    if n == 0 or len(from_b) != n:
        raise ValueError("both embeddings must return the same, non-zero number of faces")
    entries = list(from_a) + list(from_b)
    scores = np.zeros(2 * n)
    verdicts: dict[tuple, int] = {}
    for i in range(2 * n):
        for j in range(i + 1, 2 * n):
            a, b = entries[i], entries[j]
            if a == b:
                continue  # the same face twice: a tie
            key = (a, b)
            if key not in verdicts:
                verdicts[key] = int(np.sign(compare(query, a, b)))
                verdicts[(b, a)] = -verdicts[key]
            scores[i] += verdicts[key]
            scores[j] -= verdicts[key]
    ranks = average_ranks(scores)
    return float((ranks[n:].mean() - ranks[:n].mean()) / n)


def rank_difference_curve(query: Face, ranked_a: Sequence[Face], ranked_b: Sequence[Face],
                          compare: Callable[[Face, Face, Face], int], max_n: int = 10) -> list[float]:
    """The metric for N = 1..max_n, from each embedding's ranked results."""
    cache: dict[tuple, int] = {}

    def cached(q, a, b):
        if (a, b) not in cache:
            cache[(a, b)] = int(np.sign(compare(q, a, b)))
            cache[(b, a)] = -cache[(a, b)]
        return cache[(a, b)]

    return [rank_difference(query, ranked_a[:n], ranked_b[:n], cached) for n in range(1, max_n + 1)]


class VoteJudge:
    """FER+ faces: the candidate whose vote distribution is closer (total variation) to the query's wins."""

    def __init__(self, votes: dict[Face, np.ndarray]):
        self.votes = votes

    def compare(self, query: Face, first: Face, second: Face) -> int:
        q = self.votes[query]
        d1, d2 = tv_distance(self.votes[first], q), tv_distance(self.votes[second], q)
        return int(np.sign(d2 - d1))


class EmbeddingJudge:
    """A reference embedding decides: the candidate nearer to the query in it wins."""

    def __init__(self, vectors: dict[Face, np.ndarray]):
        self.vectors = vectors

    def compare(self, query: Face, first: Face, second: Face) -> int:
        q = self.vectors[query]
        d1 = float(((self.vectors[first] - q) ** 2).sum())
        d2 = float(((self.vectors[second] - q) ** 2).sum())
        return int(np.sign(d2 - d1))


@dataclass
class Study:
    """One rank-difference study: queries drawn from a folder of faces, each embedding's ranked
    neighbours among the rest. Faces are named by their path relative to the folder; the same
    arguments always give the same study, so votes cast anywhere (terminal, web page) add up."""
    data_dir: Path
    names: list[str]
    paths: list[Path]
    queries: list[str]
    ranked_a: list[list[str]]
    ranked_b: list[list[str]]
    votes: np.ndarray | None  # FER+ vote distributions per face, when the folder has label.csv

    def pairs(self) -> list[tuple[str, str, str]]:
        """Every distinct (query, face, face) pair the protocol compares for N up to max_n."""
        pairs = []
        for q, a, b in zip(self.queries, self.ranked_a, self.ranked_b):
            pool = sorted(set(a) | set(b))
            pairs += [(q, x, y) for i, x in enumerate(pool) for y in pool[i + 1:]]
        return pairs

    def path_of(self) -> dict[str, Path]:
        return dict(zip(self.names, self.paths))


def embed_named(name: str, paths: list[Path]) -> tuple[np.ndarray, str]:
    """A registered model's vectors for face crops, and the distance it ranks them by."""
    from fecsearch.evaluation.metrics import embed_paths
    from fecsearch.models.registry import create_model

    model = create_model(name)
    return embed_paths(model, paths), model.config.distance


def plan_study(data_dir: str | Path, model_a: str, model_b: str, n_queries: int = STUDY_QUERIES,
               max_n: int = STUDY_MAX_N, seed: int = STUDY_SEED,
               embed: Callable[[str, list[Path]], tuple[np.ndarray, str]] = embed_named) -> Study:
    """Draw the queries with a fixed seed and rank the rest of the folder under both embeddings.
    embed(name, paths) -> (vectors, distance): by default the registered model of that name."""
    from fecsearch.data.labels import read_ferplus
    from fecsearch.faces.images import find_images

    data_dir = Path(data_dir)
    if (data_dir / "label.csv").exists():
        faces = read_ferplus(data_dir)
        paths, votes = list(faces.paths), faces.votes
    else:  # any folder of face crops
        paths, votes = find_images(data_dir)[0], None
    if n_queries + max_n > len(paths):
        raise ValueError(f"{data_dir}: {len(paths)} faces are too few for {n_queries} queries with "
                         f"{max_n} neighbours each")
    rng = np.random.default_rng(seed)
    query_idx = np.sort(rng.choice(len(paths), n_queries, replace=False))
    collection = np.setdiff1d(np.arange(len(paths)), query_idx)
    names = [p.relative_to(data_dir).as_posix() for p in paths]
    ranked = []
    for name in (model_a, model_b):
        vectors, distance = embed(name, paths)
        hits = nearest(vectors[collection], vectors[query_idx], max_n, distance)
        ranked.append([[names[collection[j]] for j in row] for row in hits])
    return Study(data_dir, names, paths, [names[q] for q in query_idx], ranked[0], ranked[1], votes)


@dataclass
class StudyResult:
    """Each query's rank-difference curve, and their mean and standard error for N = 1..max_n."""
    per_query: list[dict]
    mean: np.ndarray
    sem: np.ndarray

    def summary(self) -> dict:
        ns = range(1, len(self.mean) + 1)
        return {"mean_by_n": {str(n): round(float(v), 4) for n, v in zip(ns, self.mean)},
                "sem_by_n": {str(n): round(float(v), 4) for n, v in zip(ns, self.sem)}}

    def plot(self, path: str | Path, title: str) -> None:
        """The curve with its standard errors, as the paper's Figure 6 draws it."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(np.arange(1, len(self.mean) + 1), self.mean, yerr=self.sem, marker="o", capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        # Centred on zero and fitted to the curve: on the full -1..1 range a difference of a few
        # hundredths, and its error bars, vanish into the axis.
        reach = float(np.max(np.abs(self.mean) + self.sem)) if len(self.mean) else 0.0
        limit = min(1.0, max(0.1, 1.25 * reach))
        ax.set(xlabel="N (faces retrieved per embedding)", ylabel="rank-difference", ylim=(-limit, limit))
        ax.set_title(title, fontsize="medium")  # long model names fit the figure's width
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def score_study(study: Study, judge: Judge, max_n: int) -> StudyResult:
    """Every query's curve under one judge, and the mean curve."""
    per_query = [{"query": q, "curve": rank_difference_curve(q, a, b, judge.compare, max_n), "a": a, "b": b}
                 for q, a, b in zip(study.queries, study.ranked_a, study.ranked_b)]
    curves = np.array([r["curve"] for r in per_query])
    sem = curves.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else np.zeros(max_n)
    return StudyResult(per_query, curves.mean(axis=0), sem)
