"""Training FECNet: the embedding head on a frozen trunk with the paper's triplet loss (eq. 1)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fecsearch.data.triplets import (MARGINS, TRIPLET_TYPES, Triplet, ferplus_vote_triplets, label_triplets,
                                     validation_triplets)
from fecsearch.models.checkpoints import save_checkpoint
from fecsearch.models.config import get_config, list_models
from fecsearch.models.network import build_trunk, pretrained_trunk
from fecsearch.models.registry import create_model
from fecsearch.runtime.heap import keep_large_allocations_in_heap
from fecsearch.train.common import (Checkpointer, Log, TripletFaces, _load_state, augment, bf16_layout_fixes_on,
                                    cached_features, forward_precision, legacy_bf16_option, load_triplet_faces,
                                    triplet_eval, validates)


def triplet_loss(e1, e2, e3, odd: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Eq. (1): the similar pair must be closer than each face of it is to the odd one, by `margin`."""
    faces = torch.stack([e1, e2, e3], 1)  # (B, 3, D)
    rows = torch.arange(len(odd), device=faces.device)
    keep = torch.ones(len(odd), 3, dtype=torch.bool, device=faces.device)
    keep[rows, odd - 1] = False
    pair = faces[keep].view(len(odd), 2, -1)
    a, b, c = pair[:, 0], pair[:, 1], faces[rows, odd - 1]
    d_ab = ((a - b) ** 2).sum(1)
    return (F.relu(d_ab - ((a - c) ** 2).sum(1) + margin) + F.relu(d_ab - ((b - c) ** 2).sum(1) + margin)).mean()


# Triplets mined inside a batch: kept where the vote distributions rank them by at least this much
# (the gap that defines a FER+ vote triplet), with a margin that grows with the gap, from eq. (1)'s
# one-class 0.1 at the smallest gap to 0.3 where the votes disagree completely.
MINED_GAP, MINED_MARGIN, MINED_SLOPE = 0.25, 0.1, 0.2 / 0.75


def mined_vote_loss(embeddings: torch.Tensor, votes: torch.Tensor) -> torch.Tensor:
    """Every (anchor, closer, farther) triplet among a batch's faces that their votes rank.

    A fixed triplet uses three faces' votes once; the vote distributions of a batch's faces rank
    far more triplets, and say by how much. Loss of eq. (1) on squared distances, averaged over
    the triplets still violating their margin ("batch all"). Cost grows with the cube of the faces.
    `votes` may also be a teacher's predicted distributions (distillation: teacher_distributions).
    """
    d = torch.cdist(embeddings, embeddings).pow(2)
    with torch.no_grad():
        tv = 0.5 * (votes[:, None] - votes[None]).abs().sum(-1)
        gap = tv[:, None, :] - tv[:, :, None]  # [a, p, n]: how much farther n is from a than p, by votes
        weight = (gap >= MINED_GAP).float()
        weight.diagonal(dim1=0, dim2=1).zero_()  # a face is not its own closer face
        margin = MINED_MARGIN + MINED_SLOPE * (gap - MINED_GAP)
    violation = F.relu(d[:, :, None] - d[:, None, :] + margin) * weight
    return violation.sum() / (violation.detach() > 0).sum().clamp(min=1)


# Faces of a batch (of 270) the mined loss looks at: 150 make 3.4M triplets, 0.1 s a step here.
MINED_FACES = 150


def stored_config(checkpoint, family: str, option: str):
    """A checkpoint's stored config; a ValueError naming `option`, before any training work, when its
    model is not of `family` ("affnet" for --teacher, "fecnet" for --distil)."""
    from fecsearch.models.config import read_checkpoint_config

    stored = read_checkpoint_config(checkpoint)
    if stored.family != family:
        kind = "classifier" if family == "affnet" else "FECNet"
        raise ValueError(f"{option} {checkpoint}: not a {kind} checkpoint (its model is '{stored.name}')")
    return stored


def teacher_distributions(checkpoint, faces: torch.Tensor, batch: int = 256, device: str = "cpu") -> torch.Tensor:
    """A classifier's predicted emotion distributions for every face and its mirror image, (2, N, 8):
    the ten raters' votes as a model trained on thousands of faces expects them, without the noise
    of which ten people happened to vote."""
    stored = stored_config(checkpoint, "affnet", "--teacher")
    name = next(n for n in list_models() if get_config(n).family == "affnet" and get_config(n).trunk == stored.trunk
                and get_config(n).output == "final")
    teacher = create_model(name, checkpoint, device=device).eval()
    out = torch.empty((2, len(faces), stored.dim))
    with torch.inference_mode():
        for i in range(0, len(faces), batch):
            x = faces[i:i + batch].float().to(device)
            for mirrored in (0, 1):
                out[mirrored, i:i + len(x)] = torch.softmax(teacher(x.flip(3) if mirrored else x), 1).cpu()
    return out


def ensemble_vectors(checkpoints, faces: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """FECNet checkpoints' vectors for every face as an index stores them (the frozen inference
    network, each face averaged with its mirror image), concatenated across checkpoints and put
    back on the unit sphere: (N, 16 x checkpoints), the space benchmarks/ensemble_heads.py measures."""
    parts = []
    for checkpoint in checkpoints:
        stored = stored_config(checkpoint, "fecnet", "--distil")
        name = next(n for n in list_models()
                    if get_config(n).family == "fecnet" and get_config(n).trunk == stored.trunk
                    and get_config(n).members == stored.members)
        parts.append(torch.from_numpy(create_model(name, checkpoint, device=device).for_inference().embed(faces)))
    return F.normalize(torch.cat(parts, 1), dim=1)


def distance_match_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the student's and the teacher's Euclidean distances over every
    pair of the batch's faces (both unit vectors, so both distances lie in 0..2)."""
    return (torch.cdist(student, student) - torch.cdist(teacher, teacher)).pow(2).mean()


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
            pool = ferplus_vote_triplets(self.faces, 3 * self.per_type * steps, seed=seed)  # votes and mined
            by_type = {k: [t for t in pool if t.type == k] for k in TRIPLET_TYPES}
            per_batch = {k: self.per_type for k in TRIPLET_TYPES}
        for s in range(steps):
            yield self._tensors([t for k, n in per_batch.items() for t in by_type[k][s * n:(s + 1) * n]])

    def _tensors(self, batch: list[Triplet]):
        ids = torch.tensor([[self.index[f] for f in t.faces] for t in batch])
        odd = torch.tensor([t.odd for t in batch])
        margin = torch.tensor([MARGINS[t.type] for t in batch])
        return ids, odd, margin


@legacy_bf16_option
def train_fecnet(train_dir, valid_dir, trunk_checkpoint, out, model_name: str = "fecnet-lite-16d",
                 epochs: int = 20, steps_per_epoch: int = 300, triplets_per_type: int = 30, lr: float = 5e-4,
                 seed: int = 0, feature_cache: bool = True, triplet_source: str = "votes",
                 trunk_lr: float = 0.0, agreement: str = "strong", tune_blocks: int = 0, teacher=None,
                 augmented_views: int = 0, augmentation: str = "affine", vote_readout: float = 0.0,
                 warm_head: bool = False, distil=(), distil_weight: float = 1.0, bf16: bool = False,
                 bf16_cache: bool = False, valid_every: int = 1, device: str = "cpu", log: Log = print) -> dict:
    """FECNet: a frozen trunk and the embedding head trained with the triplet loss on FER+ vote
    triplets, or on FEC's human triplets when train_dir is a `fec download` folder (load_triplet_faces).

    The trunk comes from `trunk_checkpoint` (a trained AFFNet-CL), or, for a trunk pretrained
    elsewhere (FaceRes), from fecsearch's converted weights when trunk_checkpoint is None.
    With feature_cache the frozen trunk runs once per face (and its mirror image) before training,
    and each step only runs the head. triplet_source="labels" trains AFFNet-TL instead: the same
    network and loss on triplets made from emotion labels alone. trunk_lr > 0 fine-tunes the trunk
    too, at that learning rate: all of it (no feature cache), or with tune_blocks=N only its last N
    blocks, above a feature cache of the frozen rest. `teacher`, a classifier checkpoint, adds the
    mined loss on its predicted distributions of each face as the batch sees it (mirrored or not).
    augmented_views=K caches K more views of every face, moved by `augmentation`, and each step
    reads each face in one of its 2 + K views (original, mirror, moved) drawn at random.
    vote_readout=W adds a linear layer that reads each face's vote distribution from its embedding,
    and W times its cross-entropy to the loss; the layer is not part of the saved model.
    warm_head starts the head's FeatureHead (1x1 conv, DenseNet block, FC 512) from the classifier
    in trunk_checkpoint instead of from random weights; only the last FC to the embedding is new.
    distil, FECNet checkpoints: their ensemble's distances between every pair of a batch's faces
    (ensemble_vectors) become targets for the new model's, distil_weight times the mean squared
    difference joining the loss: one network learns what several agree on.
    bf16=True runs each step's forward pass in bfloat16 (autocast, channels-last); weights, gradients,
    the optimiser and the loss stay float32. bf16_cache=True computes the feature cache in bfloat16
    too (faster, not the float32 cache's bits; cached_features has the measured times).
    legacy_bf16=True (keyword only) turns off the layout fixes that speed bfloat16 steps up
    (benchmarks/bench_train_steps.py), to repeat weights trained before them bit for bit.
    device: where the network trains ("cpu", "cuda", "cuda:N"); faces, the feature cache and the
    triplets stay in host memory, and each batch goes to the device.
    """
    if augmented_views and (trunk_lr > 0 and not tune_blocks or not feature_cache):
        raise ValueError("--augmented-views needs the feature cache (a frozen trunk, or --tune-blocks)")
    if augmented_views and teacher is not None:
        raise ValueError("--augmented-views and --teacher cannot be combined (the teacher saw two views)")
    keep_large_allocations_in_heap()  # steps reuse freed memory instead of mapping it anew: faster, same bits
    torch.manual_seed(seed)
    out = Path(out)
    config = get_config(model_name)
    if config.members > 1:
        single = [n for n in list_models() if get_config(n).family == "fecnet" and get_config(n).trunk == config.trunk
                  and get_config(n).members == 1]
        raise ValueError(f"{model_name} is an ensemble of {config.members} networks: train each as "
                         f"{' or '.join(single) or 'a single model'} (with its own --seed), then join them with "
                         f"`fecsearch train ensemble --model {model_name} --member A --member B --out OUT`")
    if teacher is not None:
        stored_config(teacher, "affnet", "--teacher")
    for checkpoint in distil:
        stored_config(checkpoint, "fecnet", "--distil")
    model = create_model(model_name, random_init=True)
    if trunk_checkpoint is not None:
        state = _load_state(trunk_checkpoint)
        model.trunk.load_state_dict({k[len("trunk."):]: v for k, v in state.items() if k.startswith("trunk.")})
        if warm_head:
            # the classifier's 1x1 conv, DenseNet block and FC 512 (the same FeatureHead as FECNet's)
            features = {k[len("head.features."):]: v for k, v in state.items() if k.startswith("head.features.")}
            if not features:
                raise ValueError(f"--warm-head: {trunk_checkpoint} has no classifier head to start from")
            try:
                model.head.features.load_state_dict(features)
            except RuntimeError as err:
                raise ValueError(f"--warm-head: the head of {trunk_checkpoint} has another shape ({err})") from err
    elif warm_head:
        raise ValueError("--warm-head needs --trunk: a classifier checkpoint whose head the new head starts from")
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
    model.to(device)
    t0 = time.time()
    train = load_triplet_faces(train_dir, config.preprocess, agreement)
    valid = load_triplet_faces(valid_dir, config.preprocess, agreement)
    if train.fixed is not None:
        if triplet_source in ("labels", "mined"):
            raise ValueError(f"{train_dir} holds FEC triplets; --triplets {triplet_source} needs a FER+ folder")
        triplet_source = "fec"
    x_train, x_valid, names = train.x, valid.x, valid.names
    log(f"loaded {len(x_train)} training and {len(x_valid)} validation faces in {time.time() - t0:.0f}s")
    triplets = valid.fixed if valid.fixed is not None else validation_triplets(valid.labelled)
    model.trunk.eval()
    cache = None
    if feature_cache:
        t0 = time.time()
        # (2 + K, N, C, H, W): original, mirrored, then K moved views
        cache = cached_features(lower, x_train, augmented_views=augmented_views, augmentation=augmentation, seed=seed,
                                bf16=bf16_cache)
        log(f"feature cache: {tuple(cache.shape)} in {time.time() - t0:.0f}s")
    groups = [{"params": model.head.parameters(), "lr": lr}]
    if fine_tune:
        groups.append({"params": tuned.parameters(), "lr": trunk_lr})
    readout, saved = None, model
    if vote_readout > 0:
        if train.labelled is None:
            raise ValueError("--vote-readout needs FER+ vote distributions (a folder with label.csv)")
        readout = torch.nn.Linear(config.dim, train.labelled.votes.shape[1]).to(device)
        groups.append({"params": readout.parameters(), "lr": lr})
        saved = torch.nn.ModuleDict({"model": model, "readout": readout})  # an interrupted run resumes both
    optimizer = torch.optim.Adam(groups)
    # Adam at the paper's 5e-4, annealed to zero over the run: a constant rate leaves the
    # validation accuracy swinging by several points from epoch to epoch.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    checkpointer = Checkpointer(out)
    start, history = checkpointer.load(saved, optimizer, schedule, steps_per_epoch)
    if bf16:  # oneDNN's fastest layout for bfloat16 convolutions
        saved.to(memory_format=torch.channels_last)

    def layout(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if bf16 else x

    sampler = TripletSampler(train, triplets_per_type, seed, triplet_source)
    if triplet_source == "mined" and train.labelled is None:
        raise ValueError("--triplets mined needs FER+ vote distributions (a folder with label.csv)")
    votes = torch.from_numpy(train.labelled.votes) if train.labelled is not None else None
    teacher_probs = None
    if teacher is not None:
        if train.labelled is None:
            raise ValueError("--teacher needs a FER+ folder (label.csv) to train on")
        t0 = time.time()
        teacher_probs = teacher_distributions(teacher, x_train, device=device)
        log(f"teacher's distributions: {tuple(teacher_probs.shape)} in {time.time() - t0:.0f}s")
    ensemble = None
    if distil:
        t0 = time.time()
        ensemble = ensemble_vectors(distil, x_train, device)
        log(f"vectors to distil: {tuple(ensemble.shape)} from {len(distil)} models in {time.time() - t0:.0f}s")
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(start, epochs):
        generator.manual_seed(seed * 1000 + epoch)
        model.head.train()
        model.trunk.train(fine_tune and cache is None)
        tuned.train(fine_tune)
        t0, total = time.time(), 0.0
        for ids, odd, margin in sampler.epoch(epoch, steps_per_epoch):
            flat = ids.flatten()
            # each face's view: 0 as it is, 1 mirrored, 2 and up moved (augmented_views)
            if augmented_views:
                view = torch.randint(0, 2 + augmented_views, (len(flat),), generator=generator)
            else:
                view = (torch.rand(len(flat), generator=generator) < 0.5).long()
            with forward_precision(bf16, device):
                if cache is not None:
                    features = upper(layout(cache[view, flat].float().to(device)))
                elif fine_tune:
                    features = model.trunk(layout(augment(x_train[flat].float(), generator).to(device)))
                else:
                    faces = x_train[flat].float()
                    faces = torch.where(view.bool()[:, None, None, None], faces.flip(3), faces)
                    with torch.no_grad():
                        features = model.trunk(layout(faces.to(device)))
                flat_e = model.head(features).float()
            e = flat_e.view(len(ids), 3, -1)
            loss = triplet_loss(e[:, 0], e[:, 1], e[:, 2], odd.to(device), margin.to(device))
            if triplet_source == "mined" or teacher_probs is not None:
                some = torch.randperm(len(flat), generator=generator)[:MINED_FACES]
                target = teacher_probs[view[some], flat[some]] if teacher_probs is not None else votes[flat[some]]
                loss = loss + mined_vote_loss(flat_e[some], target.to(device))
            if ensemble is not None:
                loss = loss + distil_weight * distance_match_loss(flat_e, ensemble[flat].to(device))
            if readout is not None:
                loss = loss + vote_readout * -(votes[flat].to(device) * F.log_softmax(readout(flat_e), 1)).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        seconds = time.time() - t0
        metrics = {"epoch": epoch + 1, "train_loss": total / steps_per_epoch, "seconds": round(seconds, 1)}
        if validates(epoch, epochs, valid_every):
            metrics["valid_triplet_accuracy"] = triplet_eval(model, x_valid, names, triplets)["l2"]
        history.append(metrics)
        log(json.dumps(metrics))
        checkpointer.save(saved, optimizer, epoch + 1, history)
    final = {"history": history, "train_dir": str(train_dir), "valid_dir": str(valid_dir),
             "trunk_checkpoint": str(trunk_checkpoint or config.trunk), "epochs": epochs,
             "steps_per_epoch": steps_per_epoch,
             "triplets_per_type": triplets_per_type, "lr": lr, "seed": seed, "feature_cache": feature_cache,
             "triplet_source": triplet_source, "trunk_lr": trunk_lr, "agreement": agreement,
             "tune_blocks": tune_blocks, "teacher": str(teacher) if teacher else None,
             "augmented_views": augmented_views, "augmentation": augmentation if augmented_views else None,
             "vote_readout": vote_readout, "warm_head": warm_head, "distil": [str(c) for c in distil],
             "distil_weight": distil_weight if distil else None, "bf16": bf16,
             "legacy_bf16": bf16 and not bf16_layout_fixes_on(),
             "bf16_cache": bf16_cache and cache is not None, "valid_every": valid_every,
             "device": str(device)}
    save_checkpoint(model, out, final)
    return final
