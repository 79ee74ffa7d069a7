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

from typing import Callable, Hashable, Protocol, Sequence

import numpy as np

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
        d1 = 0.5 * np.abs(self.votes[first] - q).sum()
        d2 = 0.5 * np.abs(self.votes[second] - q).sum()
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
