"""Loading a named model (models/config.py) with its trained weights."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from fecsearch.models.config import get_config, trained_config
from fecsearch.models.network import Embedder, build_network


def default_device(device: str | None = None) -> str:
    """The device asked for, else CUDA when there is one, else the CPU."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def checked_device(device: str | None = None) -> str:
    """default_device, refusing in one sentence (RuntimeUnavailable) a CUDA device torch cannot see."""
    from fecsearch.runtime.onnx import RuntimeUnavailable

    device = default_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeUnavailable(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                                 f"use --device cpu")
    return device


def create_model(name: str, checkpoint: str | Path | None = None, random_init: bool = False,
                 device: str | torch.device = "cpu") -> Embedder:
    """Build a registered model with its trained weights.

    Raises MissingWeights (saying what is missing and how to get it) rather than ever returning
    an untrained model, unless random_init=True is asked for explicitly (tests, training).
    """
    if random_init:
        config = get_config(name)
        return build_network(config, pretrained=False).to(device)
    config, path = trained_config(name, checkpoint)
    # The whole network is in the checkpoint, trunk included: no pretrained download needed.
    model = build_network(config, pretrained=False)
    state = load_file(str(path))
    model.load_state_dict(state)
    return model.to(device).eval()

