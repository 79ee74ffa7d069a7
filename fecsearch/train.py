"""Training: the AFFNet-CL classifier baseline and FECNet's triplet embedding (eq. 1)."""
from __future__ import annotations

import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .evaluate import triplet_accuracy
from .images import load_image
from .labels import LabelledFaces, read_ferplus, read_labelled
from .models.registry import (FaceEmbedder, ModelConfig, Preprocess, build_trunk, create_model, get_config,
                              prepare_face, prepare_faces, pretrained_trunk, save_checkpoint)
from .triplets import (MARGINS, TRIPLET_TYPES, Triplet, ferplus_vote_triplets, label_triplets, load_triplets,
                       strong_agreement)

Log = Callable[[str], None]
VALID_TRIPLET_SEED = 2019
VALID_TRIPLETS = 6000


def load_prepared(paths, preprocess: Preprocess, workers: int = 4) -> torch.Tensor:
    """Decode and prepare every face with the query-time preprocessing: (N, C, S, S).

    Inputs above 64 px are held in float16 (half the memory: 28K faces at 112x112 RGB take 2 GB)
    and turned back to float32 batch by batch."""
    def one(p):
        return prepare_face(load_image(p), preprocess)

    with ThreadPoolExecutor(workers) as pool:
        x = torch.stack(list(pool.map(one, paths, chunksize=64)))
    return x.half() if preprocess.size > 64 else x


def cached_features(network: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """A frozen network's output for every face and its mirror image, (2, N, ...) in float16."""
    network.eval()
    out = None
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            faces = x[i:i + batch].float()
            for mirrored in (0, 1):
                # channels-last: oneDNN's fastest layout for these convolutions on a CPU (about 1.8x)
                features = network((faces.flip(3) if mirrored else faces).contiguous(memory_format=torch.channels_last))
                if out is None:  # filled in place: no second copy of a cache that can take gigabytes
                    out = torch.empty((2, len(x), *features.shape[1:]), dtype=torch.float16)
                out[mirrored, i:i + len(faces)] = features.half()
    return out


@dataclass
class TripletFaces:
    """Faces prepared for the network, named as their triplets name them, and where the triplets
    come from: FER+ votes or labels drawn afresh each epoch, or a FEC download's human triplets."""
    x: torch.Tensor
    names: list[str]
    labelled: LabelledFaces | None = None
    fixed: list[Triplet] | None = None


def load_triplet_faces(folder, preprocess: Preprocess, agreement: str = "strong") -> TripletFaces:
    """A FER+ folder (label.csv) or a `fecsearch fec download` folder (triplets.jsonl, faces.jsonl).

    FEC faces are aligned by their landmarks with the model's geometry (fec.fec_face), as query
    faces are; agreement="strong" keeps the triplets at least two thirds of the raters agree on.
    Every face is held in memory, prepared: about 9 KB each at 48x48 grey, 600 KB at 224x224 RGB.
    """
    folder = Path(folder)
    if not (folder / "triplets.jsonl").exists():
        faces = read_ferplus(folder)
        return TripletFaces(load_prepared(faces.paths, preprocess), [str(p) for p in faces.paths], labelled=faces)
    from .fec import fec_face, read_fec_faces

    faces = read_fec_faces(folder)
    triplets = [t for t in load_triplets(folder / "triplets.jsonl") if all(f in faces for f in t.faces)]
    if agreement == "strong":
        triplets = [t for t in triplets if strong_agreement(t.annotations)]
    if not triplets:
        raise ValueError(f"{folder}: no {agreement} triplets whose three faces were downloaded")
    names = sorted({f for t in triplets for f in t.faces})
    with ThreadPoolExecutor(4) as pool:
        crops = list(pool.map(lambda name: fec_face(faces[name], preprocess.geometry), names))
    return TripletFaces(prepare_faces(crops, preprocess), names, fixed=triplets)


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 3) -> torch.Tensor:
    """Random horizontal flips and shifts of up to `shift` pixels (expressions are left-right symmetric)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift:
        size = x.shape[-1]
        padded = F.pad(x, (shift,) * 4, mode="replicate")
        dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
        x = padded[:, :, dy:dy + size, dx:dx + size]
    return x


def validation_triplets(valid: LabelledFaces, seed: int = VALID_TRIPLET_SEED, count: int = VALID_TRIPLETS):
    return ferplus_vote_triplets(valid, count, seed=seed)


def triplet_eval(model: FaceEmbedder, faces: torch.Tensor, names: list[str], triplets: list[Triplet],
                 distances=("l2",)) -> dict:
    vectors = model.embed(faces)
    return triplet_accuracy(dict(zip(names, vectors)), triplets, distances)


class Checkpointer:
    """Keeps `<out>.state.pt` (model, optimiser, epoch, metrics) so an interrupted run resumes."""

    def __init__(self, out: Path):
        self.path = out.with_name(out.stem + ".state.pt")

    def load(self, model, optimizer) -> tuple[int, list]:
        if not self.path.exists():
            return 0, []
        state = torch.load(self.path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return int(state["epoch"]), json.loads(state["history"])

    def save(self, model, optimizer, epoch: int, history: list) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "history": json.dumps(history)}, tmp)
        tmp.replace(self.path)


def train_classifier(train_dir, valid_dir, out, model_name: str = "affnet-lite-cl-p", epochs: int = 12,
                     batch_size: int = 128, lr: float = 1e-3, seed: int = 0, soft_labels: bool = False,
                     log: Log = print) -> dict:
    """AFFNet-CL: trunk + head + 8-way softmax, cross-entropy on majority labels, end to end.

    soft_labels=True uses cross-entropy against FER+ vote distributions instead of majority labels.
    """
    torch.manual_seed(seed)
    out = Path(out)
    config: ModelConfig = get_config(model_name)
    model = create_model(model_name, random_init=True)
    # A pretrained trunk (FaceRes) stays frozen, as FECNet's does: only the head learns, on cached features.
    frozen = pretrained_trunk(config)
    if frozen:
        model.trunk = build_trunk(config, pretrained=True)
        model.trunk.requires_grad_(False)
    train, valid = read_labelled(train_dir), read_labelled(valid_dir)
    t0 = time.time()
    x_train = load_prepared(train.paths, config.preprocess)
    x_valid = load_prepared(valid.paths, config.preprocess)
    y_train = torch.from_numpy(train.labels)
    if soft_labels:
        if train.votes is None:
            raise ValueError(f"{train_dir}: soft labels need FER+ votes (label.csv)")
        y_train = torch.from_numpy(train.votes)
    log(f"loaded {len(train)} training and {len(valid)} validation faces in {time.time() - t0:.0f}s")
    cache = None
    if frozen:
        t0 = time.time()
        cache = cached_features(model.trunk, x_train)
        log(f"feature cache: {tuple(cache.shape)} in {time.time() - t0:.0f}s")
    names = [str(p) for p in valid.paths]
    triplets = validation_triplets(valid) if valid.votes is not None else []
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = -(-len(train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    checkpointer = Checkpointer(out)
    start, history = checkpointer.load(model, optimizer)
    with warnings.catch_warnings():  # resuming: move the schedule to where the run stopped
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for _ in range(start * steps_per_epoch):
            schedule.step()
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(start, epochs):
        generator.manual_seed(seed * 1000 + epoch)
        model.train()
        model.trunk.train(not frozen)
        order = torch.randperm(len(train), generator=generator)
        t0, total = time.time(), 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if cache is not None:
                flip = (torch.rand(len(idx), generator=generator) < 0.5).long()
                logits = model.head(cache[flip, idx].float())
            else:
                logits = model.head(model.trunk(augment(x_train[idx].float(), generator)))
            loss = F.cross_entropy(logits, y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.inference_mode():
            logits = torch.cat([model.head(model.trunk(x_valid[i:i + 512].float()))
                                for i in range(0, len(x_valid), 512)])
        metrics = {"epoch": epoch + 1, "train_loss": total / len(train), "seconds": round(time.time() - t0, 1),
                   "valid_accuracy": float((logits.argmax(1).numpy() == valid.labels).mean())}
        if triplets:
            metrics["valid_triplet_accuracy_penultimate"] = triplet_eval(model, x_valid, names, triplets,
                                                                         ("cosine",))["cosine"]["overall"]
        history.append(metrics)
        log(json.dumps(metrics))
        checkpointer.save(model, optimizer, epoch + 1, history)
    final = {"history": history, "train_dir": str(train_dir), "valid_dir": str(valid_dir), "epochs": epochs,
             "batch_size": batch_size, "lr": lr, "seed": seed, "soft_labels": soft_labels, "frozen_trunk": frozen}
    save_checkpoint(model, out, final)
    return final


def triplet_loss(e1, e2, e3, odd: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Eq. (1): the similar pair must be closer than each face of it is to the odd one, by `margin`."""
    faces = torch.stack([e1, e2, e3], 1)  # (B, 3, D)
    rows = torch.arange(len(odd))
    keep = torch.ones(len(odd), 3, dtype=torch.bool)
    keep[rows, odd - 1] = False
    pair = faces[keep].view(len(odd), 2, -1)
    a, b, c = pair[:, 0], pair[:, 1], faces[rows, odd - 1]
    d_ab = ((a - b) ** 2).sum(1)
    return (F.relu(d_ab - ((a - c) ** 2).sum(1) + margin) + F.relu(d_ab - ((b - c) ** 2).sum(1) + margin)).mean()


class TripletSampler:
    """Batches with the same number of triplets of each type: drawn from a fresh pool each epoch
    (FER+), or a fresh shuffle of the fixed human triplets, each type cycled on its own (FEC)."""

    def __init__(self, data: TripletFaces, per_type: int, seed: int, source: str = "votes"):
        self.faces, self.fixed = data.labelled, data.fixed
        self.per_type, self.seed, self.source = per_type, seed, source
        self.index = {name: i for i, name in enumerate(data.names)}

    def epoch(self, epoch: int, steps: int):
        seed = self.seed * 7919 + epoch
        if self.fixed is not None:
            rng = np.random.default_rng(seed)
            by_type = {k: [t for t in self.fixed if t.type == k] for k in TRIPLET_TYPES}
            by_type = {k: [v[i] for i in rng.permutation(len(v))] for k, v in by_type.items() if v}
            for s in range(steps):
                batch = [v[(s * self.per_type + j) % len(v)] for v in by_type.values() for j in range(self.per_type)]
                yield self._tensors(batch)
            return
        if self.source == "labels":  # AFFNet-TL: label triplets are all of one kind, 3 x per_type a batch
            pool = label_triplets(self.faces, 3 * self.per_type * steps, seed=seed)
            by_type = {"TWO_CLASS_TRIPLET": pool}
            per_batch = {"TWO_CLASS_TRIPLET": 3 * self.per_type}
        else:
            pool = ferplus_vote_triplets(self.faces, 3 * self.per_type * steps, seed=seed)
            by_type = {k: [t for t in pool if t.type == k] for k in TRIPLET_TYPES}
            per_batch = {k: self.per_type for k in TRIPLET_TYPES}
        for s in range(steps):
            yield self._tensors([t for k, n in per_batch.items() for t in by_type[k][s * n:(s + 1) * n]])

    def _tensors(self, batch: list[Triplet]):
        ids = torch.tensor([[self.index[f] for f in t.faces] for t in batch])
        odd = torch.tensor([t.odd for t in batch])
        margin = torch.tensor([MARGINS[t.type] for t in batch])
        return ids, odd, margin


def train_fecnet(train_dir, valid_dir, trunk_checkpoint, out, model_name: str = "fecnet-lite-16d",
                 epochs: int = 20, steps_per_epoch: int = 300, triplets_per_type: int = 30, lr: float = 5e-4,
                 seed: int = 0, feature_cache: bool = True, triplet_source: str = "votes",
                 trunk_lr: float = 0.0, agreement: str = "strong", tune_blocks: int = 0, log: Log = print) -> dict:
    """FECNet: a frozen trunk and the embedding head trained with the triplet loss on FER+ vote
    triplets, or on FEC's human triplets when train_dir is a `fec download` folder (load_triplet_faces).

    The trunk comes from `trunk_checkpoint` (a trained AFFNet-CL), or, for a trunk pretrained
    elsewhere (FaceRes), from fecsearch's converted weights when trunk_checkpoint is None.
    With feature_cache the frozen trunk runs once per face (and its mirror image) before training,
    and each step only runs the head. triplet_source="labels" trains AFFNet-TL instead: the same
    network and loss on triplets made from emotion labels alone. trunk_lr > 0 fine-tunes the trunk
    too, at that learning rate: all of it (no feature cache), or with tune_blocks=N only its last N
    blocks, above a feature cache of the frozen rest.
    """
    torch.manual_seed(seed)
    out = Path(out)
    config = get_config(model_name)
    model = create_model(model_name, random_init=True)
    if trunk_checkpoint is not None:
        trunk_state = {k[len("trunk."):]: v for k, v in _load_state(trunk_checkpoint).items()
                       if k.startswith("trunk.")}
        model.trunk.load_state_dict(trunk_state)
    elif pretrained_trunk(config):
        model.trunk = build_trunk(config, pretrained=True)
    else:
        raise ValueError(f"model '{model_name}' needs --trunk: a checkpoint whose trunk the head sits on")
    fine_tune = trunk_lr > 0
    model.trunk.requires_grad_(False)
    if fine_tune and tune_blocks:
        if not hasattr(model.trunk, "split"):
            raise ValueError(f"--tune-blocks: the '{config.trunk}' trunk cannot be split into blocks")
        lower, upper = model.trunk.split(tune_blocks)
        upper.requires_grad_(True)
        tuned = upper
    else:
        lower, upper = model.trunk, torch.nn.Identity()
        model.trunk.requires_grad_(fine_tune)
        tuned = model.trunk if fine_tune else upper
        feature_cache = feature_cache and not fine_tune
    t0 = time.time()
    train = load_triplet_faces(train_dir, config.preprocess, agreement)
    valid = load_triplet_faces(valid_dir, config.preprocess, agreement)
    if train.fixed is not None:
        if triplet_source == "labels":
            raise ValueError(f"{train_dir} holds FEC triplets; label triplets (AFFNet-TL) need a FER+ folder")
        triplet_source = "fec"
    x_train, x_valid, names = train.x, valid.x, valid.names
    log(f"loaded {len(x_train)} training and {len(x_valid)} validation faces in {time.time() - t0:.0f}s")
    triplets = valid.fixed if valid.fixed is not None else validation_triplets(valid.labelled)
    model.trunk.eval()
    cache = None
    if feature_cache:
        t0 = time.time()
        cache = cached_features(lower, x_train)  # (2, N, C, H, W): original and mirrored
        log(f"feature cache: {tuple(cache.shape)} in {time.time() - t0:.0f}s")
    groups = [{"params": model.head.parameters(), "lr": lr}]
    if fine_tune:
        groups.append({"params": tuned.parameters(), "lr": trunk_lr})
    optimizer = torch.optim.Adam(groups)
    # Adam at the paper's 5e-4, annealed to zero over the run: a constant rate leaves the
    # validation accuracy swinging by several points from epoch to epoch.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    checkpointer = Checkpointer(out)
    start, history = checkpointer.load(model, optimizer)
    with warnings.catch_warnings():  # resuming: move the schedule to where the run stopped
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for _ in range(start * steps_per_epoch):
            schedule.step()
    sampler = TripletSampler(train, triplets_per_type, seed, triplet_source)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(start, epochs):
        generator.manual_seed(seed * 1000 + epoch)
        model.head.train()
        model.trunk.train(fine_tune and cache is None)
        tuned.train(fine_tune)
        t0, total = time.time(), 0.0
        for ids, odd, margin in sampler.epoch(epoch, steps_per_epoch):
            flat = ids.flatten()
            flip = (torch.rand(len(flat), generator=generator) < 0.5).long()
            if cache is not None:
                features = upper(cache[flip, flat].float())
            elif fine_tune:
                features = model.trunk(augment(x_train[flat].float(), generator))
            else:
                faces = x_train[flat].float()
                faces = torch.where(flip.bool()[:, None, None, None], faces.flip(3), faces)
                with torch.no_grad():
                    features = model.trunk(faces)
            e = model.head(features).view(len(ids), 3, -1)
            loss = triplet_loss(e[:, 0], e[:, 1], e[:, 2], odd, margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        seconds = time.time() - t0
        acc = triplet_eval(model, x_valid, names, triplets)["l2"]
        metrics = {"epoch": epoch + 1, "train_loss": total / steps_per_epoch, "seconds": round(seconds, 1),
                   "valid_triplet_accuracy": acc}
        history.append(metrics)
        log(json.dumps(metrics))
        checkpointer.save(model, optimizer, epoch + 1, history)
    final = {"history": history, "train_dir": str(train_dir), "valid_dir": str(valid_dir),
             "trunk_checkpoint": str(trunk_checkpoint or config.trunk), "epochs": epochs, "steps_per_epoch": steps_per_epoch,
             "triplets_per_type": triplets_per_type, "lr": lr, "seed": seed, "feature_cache": feature_cache,
             "triplet_source": triplet_source, "trunk_lr": trunk_lr, "agreement": agreement,
             "tune_blocks": tune_blocks}
    save_checkpoint(model, out, final)
    return final


def _load_state(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))
