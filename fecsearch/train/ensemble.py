"""An ensemble model (ModelConfig.members > 1) from FECNets trained apart: their weights in one checkpoint.

Each member is trained by the single model's recipe (`fecsearch train affnet`, then `fecsearch
train fecnet`, each with its own --seed); joining them trains nothing. The members must share the
ensemble's trunk, head and preprocessing, since one prepared face goes through all of them; an
ensemble of mixed trunks (ModelConfig.member_models) takes each member as the model it names,
whose preprocessing the network makes from the ensemble's (models/resample.py)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file

from fecsearch.faces.images import file_sha256
from fecsearch.models.checkpoints import save_checkpoint
from fecsearch.models.config import get_config, member_configs, read_checkpoint_config
from fecsearch.models.network import build_network


def join_members(model_name: str, members: list[Path], out: Path) -> dict:
    """Write `model_name`'s checkpoint from its members' checkpoints; returns what it recorded.

    A member checkpoint that is itself an ensemble (the shipped pair) fills as many places as it has
    networks, in its order."""
    config = get_config(model_name)
    if config.members < 2:
        raise ValueError(f"{model_name} is a single network, not an ensemble: train it with `fecsearch train fecnet`")
    places = [place for path in members for place in networks_in(path)]  # (file, key prefix, its config)
    if len(places) != config.members:
        raise ValueError(f"{model_name} joins {config.members} FECNets; got {len(places)} in the --member checkpoints")
    if len(set(map(file_sha256, members))) < len(members):
        raise ValueError("the same checkpoint twice: an ensemble gains only from networks trained apart")
    expected = [get_config(name) for name in config.member_models] or [None] * config.members
    first = places[0][2]
    for (path, _, member), wanted in zip(places, expected):
        wanted = wanted or replace(config, members=1)
        if member.family != "fecnet" or member.trunk != wanted.trunk:
            raise ValueError(f"{path}: a {member.family} on the {member.trunk} trunk ({member.name}); this place "
                             f"of {model_name} is a FECNet on the {wanted.trunk} trunk")
        # one architecture: the members share one head and preprocessing; mixed trunks: each is its model
        like = (first.preprocess, first.head, first.dim) if not config.member_models else \
            (wanted.preprocess, wanted.head, wanted.dim)
        if (member.preprocess, member.head, member.dim) != like:
            raise ValueError(f"{path}: its head or preprocessing differs from what this place of {model_name} "
                             f"takes; the members of an ensemble embed the same prepared face")
    joined = config if config.member_models else replace(config, preprocess=first.preprocess, head=first.head,
                                                          dim=first.dim)
    network = build_network(joined, pretrained=False)
    weights = {path: load_file(str(path)) for path in members}
    network.load_state_dict({f"members.{i}.{key[len(prefix):]}": value
                             for i, (path, prefix, _) in enumerate(places)
                             for key, value in weights[path].items() if key.startswith(prefix)})
    record = {"members": [{"file": Path(p).name, "sha256": file_sha256(p)} for p in members]}
    save_checkpoint(network, out, record)
    return record


def split_members(path: Path, out_dir: Path) -> list[Path]:
    """Write each network of an ensemble checkpoint as a checkpoint of its own: `<stem>.member<i>.safetensors`.

    The reverse of join_members: the files it writes join back into the same weights, and each one
    serves where a single FECNet's checkpoint does (`eval --checkpoint`, `train fecnet --trunk`, whose
    frozen trunk it holds, `train ensemble --member`). That is how a shipped ensemble's networks are
    measured alone, or given new heads on the same trunks, without the files of its recipe."""
    path, out_dir = Path(path), Path(out_dir)
    places = networks_in(path)
    if len(places) < 2:
        raise ValueError(f"{path} holds one network, not an ensemble: use it as it is")
    weights = load_file(str(path))
    written = []
    for i, (_, prefix, config) in enumerate(places):
        network = build_network(config, pretrained=False)
        network.load_state_dict({key[len(prefix):]: value for key, value in weights.items() if key.startswith(prefix)})
        out = out_dir / f"{path.stem}.member{i}.safetensors"
        save_checkpoint(network, out, {"split_from": path.name, "sha256": file_sha256(path), "member": i})
        written.append(out)
    return written


def networks_in(path: Path) -> list[tuple[Path, str, object]]:
    """(file, key prefix, config) of each FECNet a checkpoint holds: one, or an ensemble's members."""
    stored = read_checkpoint_config(path)
    if stored.members == 1:
        return [(path, "", stored)]
    return [(path, f"members.{i}.", one) for i, one in enumerate(member_configs(stored))]
