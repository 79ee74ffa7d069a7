"""The paper's applications as commands, on real data with the shipped models."""
import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli, small_ferplus

from fecsearch.models.config import DEFAULT_BASELINE, DEFAULT_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import photo_smiles  # noqa: E402


def test_rank_diff_command(ferplus_valid, tmp_path):
    faces = small_ferplus(ferplus_valid, tmp_path, 400)
    result = run_cli("bench", "rank-diff", "--data", faces, "--queries", 12, "--max-n", 4, "--json",
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


@pytest.mark.parametrize("model, baseline, floor", [(DEFAULT_MODEL, DEFAULT_BASELINE, 0.80),
                                                      ("fecnet-lite-x2-pair-faceres-48d", "affnet-lite-x2-cl-p", 0.80),
                                                      ("fecnet-lite-x2-pair-32d", "affnet-lite-x2-cl-p", 0.79),
                                                      ("fecnet-lite-16d", "affnet-lite-cl-p", 0.77)])
def test_shipped_models_meet_their_cards(model, baseline, floor, ferplus_valid, ckplus):
    """The default model's, its first training's, the pair's and the fast option's measured quality
    (their cards: 80.8%, 80.8%, 79.9% and 78.0% of the vote triplets) holds for the committed weights, ahead of their classifier
    baselines."""
    triplets = json.loads(run_cli("eval", "triplets", "--data", ferplus_valid, "--model", model,
                                  "--model", baseline, "--json").output)["models"]
    fecnet = triplets[model]["l2"]["overall"]
    best_baseline = max(triplets[baseline][d]["overall"] for d in ("l1", "l2", "cosine"))
    assert fecnet >= floor and fecnet > best_baseline + 0.03
    retrieval = json.loads(run_cli("eval", "retrieval", "--data", ckplus, "--model", model,
                                   "--json").output)["models"][model]
    assert retrieval["precision_at_top"] >= 0.8 > 4 * retrieval["chance"]


def test_photo_smile_finds_smiles(photos_index):
    """Through detection and alignment, as a user queries: the selfie's broad smile finds broad smiles.
    Its 5 nearest faces from other photos must all be graded broad in benchmarks/photo_smiles.csv,
    which grades every face of the photos by hand. (Until 2026-11-25 this asked for 4 of six broad
    smiles picked from one model's results; every model tried returns broad smiles outside those six,
    so that count moved between 1 and 4 across retrains while the grades stayed broad: RESULTS.md,
    "The default model is now two wide networks together".)"""
    selfie = photo_smiles.selfie_query(photos_index, photo_smiles.read_grades())
    assert selfie["grades"] == [2, 2, 2, 2, 2], selfie


def test_label_classify_and_map(ferplus_valid, tmp_path):
    import os

    from fecsearch.data.labels import read_ferplus

    faces = read_ferplus(ferplus_valid)
    folder = tmp_path / "fer"
    folder.mkdir()
    for p in faces.paths[:400]:
        os.symlink(p, folder / p.name)
    index = tmp_path / "idx"
    run_cli("index", folder, "--index", index, "--cropped", "--quiet")
    assert "labelled 400 faces" in run_cli("label", "--index", index, "--ferplus", ferplus_valid).output
    again = json.loads(run_cli("label", "--index", index, "--ferplus", ferplus_valid, "--json").output)
    assert again == {"labelled_faces": 400, "labels": len(faces.paths), "source": str(ferplus_valid)}
    # a clearly happy face from outside the index (most of its votes say happiness)
    happy = next(p for p, v in zip(faces.paths[400:], faces.votes[400:]) if v[1] >= 0.9)
    data = json.loads(run_cli("classify", happy, "--index", index, "--cropped", "-k", 30, "--json").output)
    assert data["label"] == "happiness" and data["neighbours"] == 30
    assert abs(sum(data["scores"].values()) - 1) < 1e-6
    run_cli("map", "--index", index, "--out", tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 10000


def test_photo_smiles_are_found_across_people(photos_index):
    """Every face of the photos graded by hand (benchmarks/photo_smiles.csv: no smile, slight, broad)
    queries the default model's index: its 5 nearest faces from other photos, many of them other
    pictures of the query's own person, must follow the query's smile. Random results are off by
    0.96 grades on average; the default model by 0.45, fecnet-lite-16d by 0.48 (benchmarks/RESULTS.md,
    "Smiles on photos" and "The default model is now two wide networks together")."""
    result = photo_smiles.score(*photo_smiles.graded_vectors(photos_index, photo_smiles.read_grades()))
    assert result["queries"] == 68 and result["grade_gap_random"] > 0.9
    assert result["grade_gap"] <= 0.6
    assert result["grade_gap_by_query_grade"]["2"] <= 0.6  # broad smiles find smiles
    assert result["grade_gap_by_query_grade"]["0"] <= 0.6  # faces without a smile find such faces
