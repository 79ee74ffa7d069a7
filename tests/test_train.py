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


def test_train_fecnet_with_a_teacher_classifier(ferplus_valid, tmp_path):
    """--teacher: the classifier's predicted distributions (which agree with the raters' majority on
    most faces) rank a batch's triplets; a checkpoint that is not a classifier is refused."""
    import numpy as np

    from fecsearch.data.labels import read_ferplus
    from fecsearch.models.config import get_config
    from fecsearch.models.preprocess import load_prepared
    from fecsearch.train.fecnet import teacher_distributions

    faces = read_ferplus(ferplus_valid)
    x = load_prepared(faces.paths[:300], get_config("affnet-lite-cl-f").preprocess)
    probs = teacher_distributions(TRUNK, x)
    assert probs.shape == (2, 300, 8) and np.allclose(probs.sum(-1).numpy(), 1, atol=1e-5)
    assert (probs[0].argmax(1).numpy() == faces.labels[:300]).mean() > 0.7
    assert (probs[0] - probs[1]).abs().sum(-1).mean() > 1e-3  # the mirror image is predicted on its own
    out = tmp_path / "distilled.safetensors"
    args = ["train", "fecnet", "--train", ferplus_valid, "--valid", ferplus_valid, "--trunk", TRUNK, "--out", out,
            "--steps", 2, "--per-type", 2, "--epochs", 1]
    result = run_cli(*args, "--teacher", TRUNK)
    assert "teacher's distributions" in result.output and metrics_of(out)["teacher"] == str(TRUNK)
    fecnet = TRUNK.with_name("fecnet-lite-16d.safetensors")
    refused = run_cli(*args[:-6], "--out", tmp_path / "no.safetensors", "--teacher", fecnet, ok=False)
    assert refused.exit_code != 0 and "not a classifier checkpoint" in refused.output
