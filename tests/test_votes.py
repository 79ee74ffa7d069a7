"""The people judge: votes stored in SQLite, majority per pair, resumable prompts, CSV round trip."""
import json
import re

import pytest
from conftest import run_cli, small_ferplus

from fecsearch.store.votes import MissingVote, VoteStore


def test_majority_of_raters(tmp_path):
    store = VoteStore(tmp_path / "v.db")
    with pytest.raises(MissingVote):
        store.compare("q", "a", "b")
    store.add("q", "a", "b", "ann", "left")
    store.add("q", "b", "a", "bob", "right")  # the same question asked the other way round
    store.add("q", "a", "b", "cid", "right")
    assert store.compare("q", "a", "b") == 1 and store.compare("q", "b", "a") == -1
    store.add("q", "a", "b", "bob", "right")  # bob changes his mind: his vote is replaced
    assert store.compare("q", "a", "b") == -1
    store.add("q", "a", "b", "dan", "left")
    assert store.compare("q", "a", "b") == 0  # two against two: a tie
    with pytest.raises(ValueError):
        store.add("q", "a", "b", "eve", "maybe")


def test_rank_diff_with_people_resumes(ferplus_valid, tmp_path):
    votes = tmp_path / "votes.db"
    # the fast model and its baseline: this is about votes and resuming, not about which model is judged
    args = ["bench", "rank-diff", "--data", small_ferplus(ferplus_valid, tmp_path, 200), "--queries", 2, "--max-n", 2, "--judge", "people",
            "--votes", votes, "--a", "fecnet-lite-16d", "--b", "affnet-lite-cl-p"]
    from click.testing import CliRunner

    from fecsearch.cli import main

    first = CliRunner().invoke(main, [str(a) for a in args + ["--rater", "ann"]], input="s\ns\ns\nq\n")
    total = int(re.search(r"0 of (\d+) pairs answered by ann", first.output).group(1))
    assert first.exit_code != 0 and f"{total - 3} of {total} pairs have no vote yet" in first.output
    assert (tmp_path / "votes.png").exists()  # the picture of the question
    second = CliRunner().invoke(main, [str(a) for a in args + ["--rater", "ann", "--json"]],
                                input="s\n" * (total - 3))
    assert f"3 of {total} pairs answered by ann; {total - 3} to go" in second.output
    report = json.loads(second.output[second.output.index("{"):])
    assert report["mean_by_n"] == {"1": 0.0, "2": 0.0}  # every pair judged the same: no difference
    exported = tmp_path / "votes.csv"
    run_cli("votes", "export", "--votes", votes, "--out", exported)
    assert len(exported.read_text().splitlines()) == total + 1
    run_cli("votes", "import", "--votes", tmp_path / "copy.db", exported)
    assert VoteStore(tmp_path / "copy.db").db["votes"].count == total
