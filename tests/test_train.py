"""`train fecnet` on FER+ vote triplets and on label triplets (AFFNet-TL): runs, records, resumes."""
import json
from pathlib import Path

import pytest
from conftest import run_cli
from safetensors import safe_open

TRUNK = Path(__file__).resolve().parents[1] / "fecsearch" / "weights" / "affnet-lite-cl.safetensors"


def metrics_of(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["metrics"])


@pytest.mark.parametrize("source", ["votes", "labels"])
def test_train_fecnet_on_ferplus(ferplus_valid, tmp_path, source):
    out = tmp_path / f"{source}.safetensors"
    args = ["train", "fecnet", "--train", ferplus_valid, "--valid", ferplus_valid, "--trunk", TRUNK, "--out", out,
            "--steps", 2, "--per-type", 2, "--triplets", source]
    run_cli(*args, "--epochs", 1)
    first = metrics_of(out)
    assert first["triplet_source"] == source and len(first["history"]) == 1
    # a second run with more epochs resumes from the saved state instead of starting again
    result = run_cli(*args, "--epochs", 2)
    history = metrics_of(out)["history"]
    assert len(history) == 2 and history[0] == first["history"][0]
    assert "loaded" in result.output and set(history[1]["valid_triplet_accuracy"]) >= {"overall"}
