"""The named models fecsearch knows, where their weights are, and how to load one."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from fecsearch.faces.images import file_sha256
from fecsearch.models.checkpoints import read_checkpoint_config
from fecsearch.models.config import (EMOTIONS, FACERES_PREPROCESS, LITE_HEAD, LITE_PREPROCESS, PAPER_PREPROCESS,
                                     ModelConfig)
from fecsearch.models.network import FaceEmbedder, build_trunk

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


_MODELS = {
    c.name: c
    for c in [
        ModelConfig("fecnet-16d", "fecnet", "facenet", PAPER_PREPROCESS, weights="fecnet-16d.safetensors"),
        ModelConfig("affnet-cl-p", "affnet", "facenet", PAPER_PREPROCESS, dim=8, output="penultimate",
                    distance="cosine", weights="affnet-cl.safetensors", classes=EMOTIONS),
        ModelConfig("affnet-cl-f", "affnet", "facenet", PAPER_PREPROCESS, dim=8, output="final",
                    distance="cosine", weights="affnet-cl.safetensors", classes=EMOTIONS),
        ModelConfig("fecnet-lite-16d", "fecnet", "lite", LITE_PREPROCESS, LITE_HEAD,
                    weights="fecnet-lite-16d.safetensors"),
        ModelConfig("affnet-lite-cl-p", "affnet", "lite", LITE_PREPROCESS, LITE_HEAD, dim=8,
                    output="penultimate", distance="cosine", weights="affnet-lite-cl.safetensors",
                    classes=EMOTIONS),
        ModelConfig("affnet-lite-cl-f", "affnet", "lite", LITE_PREPROCESS, LITE_HEAD, dim=8,
                    output="final", distance="cosine", weights="affnet-lite-cl.safetensors",
                    classes=EMOTIONS),
        ModelConfig("fecnet-faceres-16d", "fecnet", "faceres", FACERES_PREPROCESS,
                    weights="fecnet-faceres-16d.safetensors"),
        ModelConfig("affnet-faceres-cl-p", "affnet", "faceres", FACERES_PREPROCESS, dim=8, output="penultimate",
                    distance="cosine", weights="affnet-faceres-cl.safetensors", classes=EMOTIONS),
        ModelConfig("affnet-faceres-cl-f", "affnet", "faceres", FACERES_PREPROCESS, dim=8, output="final",
                    distance="cosine", weights="affnet-faceres-cl.safetensors", classes=EMOTIONS),
    ]
}


DEFAULT_MODEL = "fecnet-lite-16d"


class MissingWeights(RuntimeError):
    pass


def list_models() -> list[str]:
    return list(_MODELS)


def get_config(name: str) -> ModelConfig:
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(_MODELS)}") from None


def weights_path(config: ModelConfig) -> Path | None:
    return WEIGHTS_DIR / config.weights if config.weights else None


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
