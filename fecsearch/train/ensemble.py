"""An ensemble model (ModelConfig.members > 1) from FECNets trained apart: their weights in one checkpoint.

Each member is trained by the single model's recipe (`fecsearch train affnet`, then `fecsearch
train fecnet`, each with its own --seed); joining them trains nothing. The members must share the
ensemble's trunk, head and preprocessing, since one prepared face goes through all of them."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file

from fecsearch.faces.images import file_sha256
from fecsearch.models.checkpoints import save_checkpoint
from fecsearch.models.config import get_config, read_checkpoint_config
from fecsearch.models.network import build_network


def join_members(model_name: str, members: list[Path], out: Path) -> dict:
    """Write `model_name`'s checkpoint from its members' checkpoints; returns what it recorded."""
    config = get_config(model_name)
    if config.members < 2:
        raise ValueError(f"{model_name} is a single network, not an ensemble: train it with `fecsearch train fecnet`")
    if len(members) != config.members:
        raise ValueError(f"{model_name} joins {config.members} FECNets; got {len(members)} --member checkpoints")
    stored = [read_checkpoint_config(path) for path in members]
    first = stored[0]
    for path, member in zip(members, stored):
        if member.family != "fecnet" or member.members != 1 or member.trunk != config.trunk:
            raise ValueError(f"{path}: a {member.family} on the {member.trunk} trunk ({member.name}); {model_name} "
                             f"joins single FECNets on the {config.trunk} trunk")
        if (member.preprocess, member.head, member.dim) != (first.preprocess, first.head, first.dim):
            raise ValueError(f"{path}: its head or preprocessing differs from {members[0]}'s; the members of an "
                             f"ensemble embed the same prepared face with the same head")
    if len(set(map(file_sha256, members))) < len(members):
        raise ValueError("the same checkpoint twice: an ensemble gains only from networks trained apart")
    joined = replace(config, preprocess=first.preprocess, head=first.head, dim=first.dim)
    network = build_network(joined, pretrained=False)
    network.load_state_dict({f"members.{i}.{key}": value for i, path in enumerate(members)
                             for key, value in load_file(str(path)).items()})
    record = {"members": [{"file": Path(p).name, "sha256": file_sha256(p)} for p in members]}
    save_checkpoint(network, out, record)
    return record
