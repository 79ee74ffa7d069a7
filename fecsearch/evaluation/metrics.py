"""The paper's evaluations: triplet prediction accuracy (Tables 2-3) and K-NN emotion AUC (Table 4)."""
from __future__ import annotations

import numpy as np

from fecsearch.data.triplets import TRIPLET_TYPES, Triplet
from fecsearch.vectors.metrics import DISTANCES, nearest, normalise, pairwise


def triplet_correct(e1: np.ndarray, e2: np.ndarray, e3: np.ndarray, odd: np.ndarray, distance: str) -> np.ndarray:
    """True where the pair without the odd face is strictly closer than both other pairs."""
    d12, d13, d23 = pairwise(e1, e2, distance), pairwise(e1, e3, distance), pairwise(e2, e3, distance)
    d = np.stack([d23, d13, d12], 1)  # column k: distance of the pair that leaves out face k+1
    similar = d[np.arange(len(odd)), odd - 1]
    others = d.copy()
    others[np.arange(len(odd)), odd - 1] = np.inf
    return similar < others.min(1)


def triplet_accuracy(embeddings: dict[str, np.ndarray], triplets: list[Triplet],
                     distances=DISTANCES) -> dict:
    """Accuracy overall and per triplet type, for each distance. embeddings maps face name -> vector."""
    e = [np.stack([embeddings[t.faces[i]] for t in triplets]) for i in range(3)]
    odd = np.array([t.odd for t in triplets])
    kinds = np.array([t.type for t in triplets])
    result = {"triplets": len(triplets)}
    for distance in distances:
        ok = triplet_correct(*e, odd, distance)
        row = {"overall": float(ok.mean())}
        for kind in TRIPLET_TYPES:
            mask = kinds == kind
            if mask.any():
                row[kind] = float(ok[mask].mean())
        result[distance] = row
    return result


def knn_scores(train: np.ndarray, train_labels: np.ndarray, query: np.ndarray, k: int, classes: int,
               distance: str = "l2", exclude_self: bool = False) -> np.ndarray:
    """Per-class scores of each query: the fraction of its K nearest labelled faces in each class."""
    nn = nearest(train, query, k + int(exclude_self), distance)
    if exclude_self:
        nn = nn[:, 1:]
    labels = train_labels[nn]
    return np.stack([(labels == c).mean(1) for c in range(classes)], 1)


def knn_auc(scores: np.ndarray, labels: np.ndarray, class_names) -> dict:
    """One-vs-rest AUC-ROC per class, their mean, and top-1 accuracy (Table 4)."""
    from sklearn.metrics import roc_auc_score

    per_class = {}
    for c, name in enumerate(class_names):
        positives = labels == c
        if positives.any() and (~positives).any():
            per_class[name] = float(roc_auc_score(positives, scores[:, c]))
    return {"auc_per_class": per_class, "mean_auc": float(np.mean(list(per_class.values()))),
            "top1_accuracy": float((scores.argmax(1) == labels).mean()), "queries": int(len(labels))}


def embed_paths(model, paths) -> np.ndarray:
    """Embeddings of face crops, prepared exactly as training and `index --cropped` prepare them.
    model: a torch model (models.network.FaceEmbedder), or a network ready to embed (models.inference)."""
    from fecsearch.models.preprocess import load_prepared

    network = model.for_inference() if hasattr(model, "for_inference") else model
    return network.embed(load_prepared(paths, model.config.preprocess))


def subject_of(path) -> str:
    """CK+ names files S<subject>_<sequence>_<frame>.png."""
    return str(path).rsplit("/", 1)[-1].split("_")[0]


def subject_independent_hits(vectors: np.ndarray, labels: np.ndarray, subjects: list[str], top: int = 5,
                             distance: str = "l2") -> np.ndarray:
    """Per query: the share of its `top` nearest faces, other subjects only, that show its expression."""
    subjects = np.array(subjects)
    v = normalise(vectors, np.float64) if distance == "cosine" else np.asarray(vectors, np.float64)
    d = ((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    d[subjects[:, None] == subjects[None, :]] = np.inf  # the query's own subject never counts
    ranked = np.argsort(d, axis=1)[:, :top]
    return (labels[ranked] == labels[:, None]).mean(1)


def subject_independent_retrieval(vectors: np.ndarray, labels: np.ndarray, subjects: list[str], top: int = 5,
                                  distance: str = "l2") -> dict:
    """Share of each query's `top` nearest faces, other subjects only, that show the query's expression."""
    hits = subject_independent_hits(vectors, labels, subjects, top, distance)
    subjects = np.array(subjects)
    chance = float(np.mean([(labels[subjects != s] == c).mean() for s, c in zip(subjects, labels)]))
    return {"precision_at_top": float(hits.mean()), "top": top, "queries": int(len(labels)), "chance": chance}
