"""Embedding models: a frozen trunk and a trained head, each with its own preprocessing.

The names below are loaded on first use, so that reading a model's config (models/config.py)
does not import torch.
"""
from importlib import import_module

_WHERE = {
    "DEFAULT_MODEL": "config", "EMOTIONS": "config", "ModelConfig": "config", "Preprocess": "config",
    "get_config": "config", "list_models": "config",
    "FaceEmbedder": "network", "prepare_face": "preprocess",
    "MissingWeights": "config", "create_model": "registry",
    "read_checkpoint_config": "config", "save_checkpoint": "checkpoints",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'fecsearch.models' has no attribute '{name}'")
    return getattr(import_module(f"fecsearch.models.{_WHERE[name]}"), name)
