"""Album summarisation (the paper's Figure 9): cluster an album's faces by expression, show one per cluster."""
from __future__ import annotations

import numpy as np

from fecsearch.vectors.metrics import normalise


def summarize(vectors: np.ndarray, n: int) -> list[dict]:
    """Agglomerative clustering with cosine distance and complete linkage into n clusters; for each
    cluster, the member closest (cosine) to the cluster's mean. Largest clusters first."""
    from sklearn.cluster import AgglomerativeClustering

    vectors = np.asarray(vectors, np.float64)
    n = min(n, len(vectors))
    if n <= 1:
        return [{"representative": 0, "members": list(range(len(vectors)))}] if len(vectors) else []
    labels = AgglomerativeClustering(n_clusters=n, metric="cosine", linkage="complete").fit_predict(vectors)
    unit = normalise(vectors, np.float64)
    clusters = []
    for c in range(n):
        members = np.flatnonzero(labels == c)
        centre = unit[members].mean(0)
        best = members[np.argmax(unit[members] @ centre)]
        clusters.append({"representative": int(best), "members": members.tolist()})
    return sorted(clusters, key=lambda c: -len(c["members"]))
