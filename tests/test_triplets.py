"""Triplet sources: FER+ vote triplets by the shared data's rule, and FEC's CSV."""
import numpy as np
import pytest

from fecsearch.data.labels import read_ferplus
from fecsearch.data.triplets import (TRIPLET_TYPES, ferplus_vote_triplets, load_triplets, parse_fec_csv, save_triplets,
                                     strong_agreement, tv_distance)


@pytest.fixture(scope="module")
def valid(ferplus_valid):
    return read_ferplus(ferplus_valid)


def test_ferplus_filter(valid, ferplus_valid):
    assert 3000 < len(valid) < 3579
    assert np.allclose(valid.votes.sum(1), 1)
    # unique arg-max, as the rule requires
    top = np.sort(valid.votes, 1)
    assert (top[:, -1] > top[:, -2]).all()


def test_vote_triplets_follow_the_rule(valid):
    triplets = ferplus_vote_triplets(valid, 600, seed=3)
    assert len(triplets) == 600
    assert {t.type: 0 for t in triplets}.keys() == set(TRIPLET_TYPES)
    index = {str(p): i for i, p in enumerate(valid.paths)}
    for t in triplets:
        idx = [index[f] for f in t.faces]
        v, c = valid.votes[idx], valid.labels[idx]
        assert len(set(c)) == {"ONE_CLASS_TRIPLET": 1, "TWO_CLASS_TRIPLET": 2, "THREE_CLASS_TRIPLET": 3}[t.type]
        d = {3: tv_distance(v[0], v[1]), 2: tv_distance(v[0], v[2]), 1: tv_distance(v[1], v[2])}
        others = sorted(d[k] for k in d if k != t.odd)
        assert d[t.odd] + 0.25 <= others[0] + 1e-6  # strong agreement: the pair wins by 0.25
    assert [t.faces for t in ferplus_vote_triplets(valid, 60, seed=3)] == \
        [t.faces for t in ferplus_vote_triplets(valid, 60, seed=3)]


def test_triplets_round_trip(valid, tmp_path):
    triplets = ferplus_vote_triplets(valid, 30, seed=1)
    save_triplets(triplets, tmp_path / "t.jsonl")
    assert load_triplets(tmp_path / "t.jsonl") == triplets


def test_fec_csv(tmp_path):
    row = ("http://x/a.jpg,0.1,0.5,0.2,0.6,http://x/b.jpg,0.0,1.0,0.0,1.0,http://x/c.jpg,0.3,0.4,0.3,0.4,"
           "TWO_CLASS_TRIPLET,r1,2,r2,2,r3,1,r4,2,r5,2,r6,3\n")
    (tmp_path / "fec.csv").write_text(row)
    [parsed] = parse_fec_csv(tmp_path / "fec.csv")
    assert parsed["faces"][0] == {"url": "http://x/a.jpg", "box": (0.1, 0.5, 0.2, 0.6)}
    assert parsed["type"] == "TWO_CLASS_TRIPLET" and len(parsed["annotations"]) == 6
    assert strong_agreement(parsed["annotations"])  # 4 of 6 agree
    assert not strong_agreement([("a", 1), ("b", 2), ("c", 3), ("d", 1), ("e", 2), ("f", 3)])


def test_label_triplets(valid):
    from fecsearch.data.triplets import label_triplets

    triplets = label_triplets(valid, 200, seed=0)
    index = {str(p): i for i, p in enumerate(valid.paths)}
    for t in triplets:
        labels = [valid.labels[index[f]] for f in t.faces]
        odd = t.odd - 1
        pair = [labels[i] for i in range(3) if i != odd]
        assert pair[0] == pair[1] != labels[odd]
