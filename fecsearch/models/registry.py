"""Loading a named model (models/config.py) with its trained weights."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from fecsearch.faces.images import file_sha256
from fecsearch.models.checkpoints import read_checkpoint_config
from fecsearch.models.config import DEFAULT_MODEL, MissingWeights, get_config, weights_path
from fecsearch.models.network import FaceEmbedder, build_trunk


def default_device(device: str | None = None) -> str:
    """The device asked for, else CUDA when there is one, else the CPU."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def create_model(name: str, checkpoint: str | Path | None = None, random_init: bool = False,
                 device: str | torch.device = "cpu") -> FaceEmbedder:
    """Build a registered model with its trained weights.

    Raises MissingWeights (saying what is missing and how to get it) rather than ever returning
    an untrained model, unless random_init=True is asked for explicitly (tests, training).
    """
    config = get_config(name)
    if random_init:
        return FaceEmbedder(config, build_trunk(config, pretrained=False)).to(device)
    path = Path(checkpoint) if checkpoint else weights_path(config)
    if path is None or not path.exists():
        hint = (
            f"train it with `fecsearch train {config.family} ...` (see the models' cards in "
            f"fecsearch/weights/) and pass --checkpoint, or use the shipped offline model "
            f"'{DEFAULT_MODEL}'"
        )
        raise MissingWeights(f"model '{name}' has no trained weights at {path}; {hint}.")
    stored = read_checkpoint_config(path)
    # A checkpoint's preprocessing and head win: they are what its weights were trained with.
    config = replace(config, preprocess=stored.preprocess, head=stored.head, dim=stored.dim,
                     trunk=stored.trunk, classes=stored.classes or config.classes)
    # The whole network is in the checkpoint, trunk included: no pretrained download needed.
    model = FaceEmbedder(config, build_trunk(config, pretrained=False))
    state = load_file(str(path))
    model.load_state_dict(state)
    return model.to(device).eval()


def weights_checksum(model_name: str, checkpoint: str | Path | None) -> str:
    return file_sha256(Path(checkpoint) if checkpoint else weights_path(get_config(model_name)))
