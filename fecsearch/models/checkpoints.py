"""Checkpoints: weights plus the config they were trained with, in one safetensors file."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from fecsearch.models.network import Embedder


def save_checkpoint(model: Embedder, path: str | Path, metrics: dict | None = None) -> None:
    """Weights plus the config (and metrics) they belong to, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": model.config.to_json(), "metrics": json.dumps(metrics or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
