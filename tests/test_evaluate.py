"""The paper's metrics on hand-checked inputs."""
import numpy as np
import pytest

from fecsearch.data.triplets import Triplet
from fecsearch.evaluation.metrics import (knn_auc, knn_scores, subject_independent_hits, subject_independent_retrieval,
                                          triplet_accuracy, triplet_correct)


def test_triplet_correct_by_hand():
    e1 = np.array([[0.0, 0.0], [0.0, 0.0]])
    e2 = np.array([[1.0, 0.0], [1.0, 0.0]])
    e3 = np.array([[5.0, 0.0], [0.5, 0.0]])
    # first triplet: 1 and 2 are close, 3 is odd -> right when odd=3, wrong when odd=1
    assert triplet_correct(e1, e2, e3, np.array([3, 3]), "l2").tolist() == [True, False]
    # second: 3 sits between 1 and 2: the closest pair is (1,3) or (2,3) (tie 0.25), so odd=2 is not strict
    assert triplet_correct(e1, e2, e3, np.array([1, 2]), "l1").tolist() == [False, False]


def test_triplet_accuracy_per_type():
    emb = {"a": np.array([1.0, 0]), "b": np.array([0.9, 0.1]), "c": np.array([0.0, 1])}
    ts = [Triplet(("a", "b", "c"), "ONE_CLASS_TRIPLET", [("r", 3)]),
          Triplet(("a", "b", "c"), "TWO_CLASS_TRIPLET", [("r", 1)])]
    acc = triplet_accuracy(emb, ts)
    for d in ("l1", "l2", "cosine"):
        assert acc[d]["overall"] == 0.5
        assert acc[d]["ONE_CLASS_TRIPLET"] == 1.0 and acc[d]["TWO_CLASS_TRIPLET"] == 0.0


def test_knn_auc_separable_and_random():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    centres = np.eye(3) * 10
    train = centres[labels] + rng.standard_normal((300, 3))
    test = centres[labels] + rng.standard_normal((300, 3))
    r = knn_auc(knn_scores(train, labels, test, 20, 3), labels, ["a", "b", "c"])
    assert r["mean_auc"] == pytest.approx(1.0) and r["top1_accuracy"] == 1.0
    noise = knn_auc(knn_scores(rng.standard_normal((300, 3)), labels, rng.standard_normal((300, 3)), 20, 3),
                    labels, ["a", "b", "c"])
    assert 0.4 < noise["mean_auc"] < 0.6


def test_subject_independent_retrieval_excludes_own_subject():
    # Two subjects; each subject's faces are identical vectors regardless of expression, so without
    # excluding the subject every neighbour would be the same person.
    vectors = np.array([[0.0, 0], [0, 0], [5, 5], [5, 5.1]])
    labels = np.array([0, 1, 0, 1])
    subjects = ["S1", "S1", "S2", "S2"]
    r = subject_independent_retrieval(vectors, labels, subjects, top=1)
    # neighbours of S1's faces are S2's; the nearest S2 face to [0,0] is [5,5] (label 0)
    assert r["precision_at_top"] == pytest.approx(0.5)
    # per query: both S1 faces find [5,5] (label 0), both S2 faces find [0,0] (label 0)
    assert subject_independent_hits(vectors, labels, subjects, top=1).tolist() == [1.0, 0.0, 1.0, 0.0]
