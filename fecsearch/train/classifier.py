"""Training the AFFNet-CL baseline: an emotion classifier on FER+ labels (majority or vote distributions)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fecsearch.data.labels import read_labelled
from fecsearch.data.triplets import validation_triplets
from fecsearch.models.checkpoints import save_checkpoint
from fecsearch.models.config import ModelConfig, get_config
from fecsearch.models.network import build_trunk, pretrained_trunk
from fecsearch.models.preprocess import load_prepared
from fecsearch.models.registry import create_model
from fecsearch.runtime.heap import keep_large_allocations_in_heap
from fecsearch.train.common import (Checkpointer, Log, augmented, bf16_layout_fixes_on, cached_features,
                                    forward_precision, legacy_bf16_option, mixed, triplet_eval, validates)


@legacy_bf16_option
def train_classifier(train_dir, valid_dir, out, model_name: str = "affnet-lite-cl-p", epochs: int = 12,
                     batch_size: int = 128, lr: float = 1e-3, seed: int = 0, soft_labels: bool = False,
                     trunk_lr: float = 0.0, tune_blocks: int = 0, augmentation: str = "shift",
                     mixup: float = 0.0, bf16: bool = False, valid_every: int = 1, feature_cache: bool = True,
                     device: str = "cpu", log: Log = print) -> dict:
    """AFFNet-CL: trunk + head + 8-way softmax, cross-entropy on majority labels, end to end.

    soft_labels=True uses cross-entropy against FER+ vote distributions instead of majority labels.
    A pretrained trunk (FaceRes) stays frozen, or with trunk_lr > 0 and tune_blocks=N its last N
    blocks learn too, at trunk_lr, above a feature cache of the frozen rest: the way to turn an
    identity trunk towards expressions before a FECNet head is trained on it. tune_blocks equal to
    all of its blocks (FaceRes: 11) trains the whole trunk, stem included, on augmented faces with
    no cache (a cache of the stem's output alone would take 11 GB for FER+ train at 112 px).
    feature_cache=False with fewer blocks than that trains them on augmented faces too, the frozen
    lower blocks run at every step without gradients (their weights need none, and the faces none):
    the highest-resolution blocks, the costliest to train, keep their pretrained weights (FaceRes with
    the stem and 3 blocks frozen: 148 s an epoch against 234 s with every block learning;
    benchmarks/RESULTS.md, "Three networks from scratch in 85 minutes").
    augmentation: "shift" (flips and 3-pixel shifts) or "affine" (flips, rotation, zoom, shift,
    contrast and brightness), for a trunk trained from scratch.
    mixup > 0: each batch is blended with itself in another order, inputs and targets (one-hot or vote
    distributions) alike, by a weight drawn from Beta(mixup, mixup): the classifier learns that a
    face between two expressions gets the votes between theirs.
    bf16=True runs the forward pass in bfloat16 (autocast; weights, gradients and the optimiser stay
    float32) in channels-last layout: a step in 0.44x the time (lite trunk) to 0.31x (lite-x2) on a CPU
    with AMX (benchmarks/bench_train_precision.py); slower on a CPU without bfloat16 units.
    legacy_bf16=True (keyword only) turns off the layout fixes that speed bfloat16 steps up
    (benchmarks/bench_train_steps.py), to repeat weights trained before them bit for bit.
    device: where the network trains ("cpu", "cuda", "cuda:N"); the faces, their augmentation and
    the feature cache stay in host memory and go to the device a batch at a time.
    """
    if mixup < 0:
        raise ValueError(f"--mixup must be 0 (off) or more, not {mixup}")
    keep_large_allocations_in_heap()  # steps reuse freed memory instead of mapping it anew: faster, same bits
    torch.manual_seed(seed)
    out = Path(out)
    config: ModelConfig = get_config(model_name)
    model = create_model(model_name, random_init=True)
    # A pretrained trunk (FaceRes) stays frozen, as FECNet's does: only the head learns, on cached features.
    frozen = pretrained_trunk(config)
    if (trunk_lr > 0) != (tune_blocks > 0) or (tune_blocks and not frozen):
        raise ValueError("--trunk-lr and --tune-blocks go together, and only with a pretrained trunk (FaceRes)")
    upper = torch.nn.Identity()
    below = None  # without a feature cache: the frozen blocks under `upper`, run at every step
    whole = False  # a pretrained trunk fine-tuned as a whole: trained like a lite trunk, at trunk_lr
    if frozen:
        model.trunk = build_trunk(config, pretrained=True)
        model.trunk.requires_grad_(False)
        lower = model.trunk
        whole = tune_blocks >= getattr(model.trunk, "cut", tune_blocks + 1)
        if whole:
            model.trunk.requires_grad_(True)
        elif tune_blocks:
            lower, upper = model.trunk.split(tune_blocks)
            upper.requires_grad_(True)
            if not feature_cache:
                below = lower
    model.to(device)
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
    if frozen and not whole and feature_cache:
        t0 = time.time()
        cache = cached_features(lower, x_train)
        log(f"feature cache: {tuple(cache.shape)} in {time.time() - t0:.0f}s")
    names = [str(p) for p in valid.paths]
    triplets = validation_triplets(valid) if valid.votes is not None else []
    groups = [{"params": model.head.parameters(), "lr": lr}]
    if not frozen:
        groups.append({"params": model.trunk.parameters(), "lr": lr})
    elif whole:
        groups.append({"params": model.trunk.parameters(), "lr": trunk_lr})
    elif tune_blocks:
        groups.append({"params": upper.parameters(), "lr": trunk_lr})
    optimizer = torch.optim.Adam(groups)
    steps_per_epoch = -(-len(train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, [g["lr"] for g in groups],
                                                   total_steps=epochs * steps_per_epoch)
    if bf16:
        model.to(memory_format=torch.channels_last)
    checkpointer = Checkpointer(out)
    start, history = checkpointer.load(model, optimizer, schedule, steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(start, epochs):
        generator.manual_seed(seed * 1000 + epoch)
        model.train()
        model.trunk.train(not frozen or whole)
        upper.train(bool(tune_blocks))
        order = torch.randperm(len(train), generator=generator)
        t0, total = time.time(), 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if cache is not None:
                flip = (torch.rand(len(idx), generator=generator) < 0.5).long()
                x, forward = cache[flip, idx].float(), lambda x: model.head(upper(x))
            else:
                x = augmented(x_train[idx].float(), generator, augmentation)
                forward = lambda x: model.head(upper(below(x)) if below else model.trunk(x))  # noqa: E731
            target = y_train[idx]
            if mixup > 0:
                x, target = mixed(x, target, mixup, generator)
            x, target = x.to(device, non_blocking=True), target.to(device, non_blocking=True)
            with forward_precision(bf16, device):
                logits = forward(x.contiguous(memory_format=torch.channels_last) if bf16 else x)
            loss = F.cross_entropy(logits.float(), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        metrics = {"epoch": epoch + 1, "train_loss": total / len(train), "seconds": round(time.time() - t0, 1)}
        model.eval()
        if validates(epoch, epochs, valid_every):
            with torch.inference_mode():
                logits = torch.cat([model.head(model.trunk(x_valid[i:i + 512].float().to(device))).cpu()
                                    for i in range(0, len(x_valid), 512)])
            metrics["valid_accuracy"] = float((logits.argmax(1).numpy() == valid.labels).mean())
            if triplets:
                metrics["valid_triplet_accuracy_penultimate"] = triplet_eval(model, x_valid, names, triplets,
                                                                             ("cosine",))["cosine"]["overall"]
        history.append(metrics)
        log(json.dumps(metrics))
        checkpointer.save(model, optimizer, epoch + 1, history)
    final = {"history": history, "train_dir": str(train_dir), "valid_dir": str(valid_dir), "epochs": epochs,
             "batch_size": batch_size, "lr": lr, "seed": seed, "soft_labels": soft_labels, "frozen_trunk": frozen,
             "trunk_lr": trunk_lr, "tune_blocks": tune_blocks, "whole_trunk_tuned": whole,
             "augmentation": augmentation, "mixup": mixup, "bf16": bf16,
             "legacy_bf16": bf16 and not bf16_layout_fixes_on(), "valid_every": valid_every,
             "feature_cache": cache is not None, "device": str(device)}
    save_checkpoint(model, out, final)
    return final
