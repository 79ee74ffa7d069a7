"""The paper's applications as commands, on real data with the shipped models."""
import json

from conftest import run_cli


def test_rank_diff_command(ferplus_valid, tmp_path):
    result = run_cli("bench", "rank-diff", "--data", ferplus_valid, "--queries", 12, "--max-n", 4, "--json",
                     "--out", tmp_path / "r.json", "--plot", tmp_path / "r.png")
    report = json.loads(result.output)
    assert set(report["mean_by_n"]) == {"1", "2", "3", "4"}
    assert all(-1 <= v <= 1 for v in report["mean_by_n"].values())
    full = json.loads((tmp_path / "r.json").read_text())
    assert len(full["per_query"]) == 12 and all(len(q["a"]) == 4 for q in full["per_query"])
    assert report["collection"] == full["collection"]
    queries = {q["query"] for q in full["per_query"]}
    assert not queries & {f for q in full["per_query"] for f in q["a"] + q["b"]}  # never retrieves a query
    assert (tmp_path / "r.png").stat().st_size > 5000


def test_summarize_index(photos_index, tmp_path):
    data = json.loads(run_cli("summarize", "--index", photos_index, "-n", 5, "--json",
                              "--sheet", tmp_path / "s.jpg").output)
    assert len(data["clusters"]) == 5
    assert sum(c["cluster_size"] for c in data["clusters"]) == data["faces"]
    assert len({c["face_id"] for c in data["clusters"]}) == 5
    assert (tmp_path / "s.jpg").stat().st_size > 1000
