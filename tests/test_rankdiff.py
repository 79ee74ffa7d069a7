"""The rank-difference metric with a scripted judge whose answers are known."""
import numpy as np
import pytest

from fecsearch.evaluation.rankdiff import average_ranks, rank_difference, rank_difference_curve


def judge_by_quality(quality):
    """Scripted judge: the face with the higher quality number is closer; equal numbers tie."""
    def compare(query, a, b):
        return int(np.sign(quality[a] - quality[b]))
    return compare


def test_average_ranks_share_ties():
    assert average_ranks([5, 3, 3, 1]).tolist() == [1, 2.5, 2.5, 4]
    assert average_ranks([0, 0, 0]).tolist() == [2, 2, 2]


@pytest.mark.parametrize("n", [1, 3, 10])
def test_extremes(n):
    a = [f"a{i}" for i in range(n)]
    b = [f"b{i}" for i in range(n)]
    quality = {**{f: 10 for f in a}, **{f: 0 for f in b}}
    assert rank_difference("q", a, b, judge_by_quality(quality)) == 1.0
    assert rank_difference("q", b, a, judge_by_quality(quality)) == -1.0
    same = {f: 1 for f in a + b}
    assert rank_difference("q", a, b, judge_by_quality(same)) == 0.0


def test_mixed_case_by_hand():
    # N = 2: A = [a1, a2], B = [b1, b2] with qualities a1=3, b1=2, a2=1, b2=1.
    # Pair scores: a1 beats all (+3); b1 beats a2, b2, loses a1 (+1); a2: loses a1, b1, ties b2 (-2);
    # b2 likewise (-2). Ranks: a1=1, b1=2, a2=b2=3.5. Mean A = 2.25, mean B = 2.75 -> (2.75-2.25)/2 = 0.25
    quality = {"a1": 3, "b1": 2, "a2": 1, "b2": 1}
    assert rank_difference("q", ["a1", "a2"], ["b1", "b2"], judge_by_quality(quality)) == pytest.approx(0.25)


def test_face_retrieved_by_both_is_neutral():
    # N = 2: both embeddings find 'x' (the best face); A's other face beats B's other face.
    # Entries: x(A), a(A), x(B), b(B); scores: x: beats a, b (+2 each entry), a: loses x twice, beats b (-1),
    # b: -3. Ranks: x,x share 1.5; a=3; b=4. Mean A = (1.5+3)/2 = 2.25, mean B = (1.5+4)/2 = 2.75 -> 0.25
    quality = {"x": 9, "a": 5, "b": 1}
    assert rank_difference("q", ["x", "a"], ["x", "b"], judge_by_quality(quality)) == pytest.approx(0.25)
    # identical lists: exactly 0
    assert rank_difference("q", ["x", "a"], ["x", "a"], judge_by_quality(quality)) == 0.0


def test_curve_asks_each_pair_once():
    asked = []
    quality = {f"a{i}": 10 - i for i in range(10)} | {f"b{i}": 5 - i for i in range(10)}

    def compare(q, a, b):
        asked.append((a, b))
        return int(np.sign(quality[a] - quality[b]))

    curve = rank_difference_curve("q", [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)], compare)
    assert len(curve) == 10 and all(-1 <= v <= 1 for v in curve) and curve[0] == 1.0
    assert len(asked) == len(set(frozenset(p) for p in asked)) == 20 * 19 // 2
