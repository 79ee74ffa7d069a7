"""Checkpoints: weights plus the config they were trained with, in one safetensors file."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import safe_open, save_file

from fecsearch.models.config import ModelConfig
from fecsearch.models.network import FaceEmbedder


def read_checkpoint_config(path: str | Path) -> ModelConfig:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a fecsearch checkpoint (no config in its metadata)")
    return ModelConfig.from_json(meta["config"])


def save_checkpoint(model: FaceEmbedder, path: str | Path, metrics: dict | None = None) -> None:
    """Weights plus the config (and metrics) they belong to, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": model.config.to_json(), "metrics": json.dumps(metrics or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
