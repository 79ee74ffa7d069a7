"""What both trainings share: faces prepared once, augmentation, validation, resumable checkpoints."""
from __future__ import annotations

import contextlib
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from fecsearch.data.labels import LabelledFaces, read_ferplus
from fecsearch.data.triplets import Triplet, load_triplets, strong_agreement
from fecsearch.evaluation.metrics import triplet_accuracy
from fecsearch.models.config import EMOTIONS, Preprocess
from fecsearch.models.network import FaceEmbedder
from fecsearch.models.preprocess import load_prepared, prepare_faces

Log = Callable[[str], None]


def cached_features(network: torch.nn.Module, x: torch.Tensor, batch: int = 256, augmented_views: int = 0,
                    augmentation: str = "affine", seed: int = 0, bf16: bool = False) -> torch.Tensor:
    """A frozen network's output for every face and its mirror image, (2, N, ...) in float16; with
    augmented_views=K, K more views of every face follow them, (2 + K, N, ...): each view is the face
    moved by `augmentation` (augmented()), drawn with its own seed.

    bf16=True runs the network in bfloat16 (autocast), its weights laid out channels-last: FER+ train's
    cache in 67 s against 225 s (lite-x2 trunk) and 114 s against 177 s (FaceRes at 112 px) here
    (benchmarks/RESULTS.md, "Three networks from scratch in 85 minutes"). The cache then differs from a float32
    one by bfloat16's rounding (3 significant digits), so a run with it is not the same bits."""
    network.eval()
    device = next(network.parameters()).device
    out = None
    generator = torch.Generator()
    if bf16:
        network.to(memory_format=torch.channels_last)
    with torch.inference_mode(), forward_precision(bf16, device.type):
        for i in range(0, len(x), batch):
            faces = x[i:i + batch].float()
            for view in range(2 + augmented_views):
                if view < 2:
                    moved = faces.flip(3) if view else faces
                else:
                    # a seed per (view, batch): the cache is the same whatever else ran before it
                    generator.manual_seed(seed * 1_000_003 + view * 10_007 + i)
                    moved = augmented(faces, generator, augmentation)
                # channels-last: oneDNN's fastest layout for these convolutions on a CPU (about 1.8x)
                features = network(moved.to(device).contiguous(memory_format=torch.channels_last))
                if out is None:  # filled in place: no second copy of a cache that can take gigabytes
                    out = torch.empty((2 + augmented_views, len(x), *features.shape[1:]), dtype=torch.float16)
                out[view, i:i + len(faces)] = features.half().cpu()  # in host memory, whatever the device
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
    from fecsearch.data.fec import fec_face, read_fec_faces

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


def augment(x: torch.Tensor, generator: torch.Generator, shift: int | None = None) -> torch.Tensor:
    """Random horizontal flips and shifts of up to `shift` pixels (expressions are left-right symmetric).

    By default the shift is 3 pixels of a 48 px face, scaled with the input (7 at 112 px): FER's
    crops upscaled for a pretrained trunk move as far, in face widths, as they do at 48 px."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    size = x.shape[-1]
    if shift is None:
        shift = round(3 * size / 48)
    if shift:
        padded = F.pad(x, (shift,) * 4, mode="replicate")
        dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
        x = padded[:, :, dy:dy + size, dx:dx + size]
    return x


AUGMENTATIONS = ("shift", "affine")


def augment_affine(x: torch.Tensor, generator: torch.Generator, rotation: float = 10.0, scale: float = 0.1,
                   shift: float = 0.06, contrast: float = 0.2, brightness: float = 0.4) -> torch.Tensor:
    """Random flips, then for each face its own rotation (degrees), zoom, shift (a fraction of the
    side) and contrast and brightness (on the normalised values).

    Faces found in photos are aligned from five noisy landmarks, so their roll, size and position
    wander by a few percent around the training crops' geometry, and their exposure more than that.
    """
    n = len(x)
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)

    def uniform(half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_width

    angle = uniform(rotation) * (torch.pi / 180)
    zoom = 1 + uniform(scale)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid maps output coordinates (-1..1) to where each output pixel is read in the input.
    theta = torch.stack([torch.stack([cos, -sin, uniform(2 * shift)], 1),
                         torch.stack([sin, cos, uniform(2 * shift)], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = (1 + uniform(contrast)).to(x.dtype)[:, None, None, None]
    offset = uniform(brightness).to(x.dtype)[:, None, None, None]
    return x * gain + offset


def augmented(x: torch.Tensor, generator: torch.Generator, kind: str = "shift") -> torch.Tensor:
    if kind == "affine":
        return augment_affine(x, generator)
    if kind == "shift":
        return augment(x, generator)
    raise ValueError(f"unknown augmentation {kind!r}; expected one of {', '.join(AUGMENTATIONS)}")


def mixed(x: torch.Tensor, target: torch.Tensor, alpha: float, generator: torch.Generator,
          classes: int = len(EMOTIONS)) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup: the batch blended with itself in another order by one weight w ~ Beta(alpha, alpha), inputs
    and targets alike; class labels become one-hot first, so targets are distributions either way."""
    import numpy as np

    if target.dim() == 1:
        target = F.one_hot(target, classes).float()
    # torch's Beta sampler takes no generator: numpy's, seeded from it, keeps a run reproducible.
    weight = float(np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator))).beta(alpha, alpha))
    other = torch.randperm(len(x), generator=generator)
    return weight * x + (1 - weight) * x[other], weight * target + (1 - weight) * target[other]

def forward_precision(bf16: bool, device: str):
    """The context a training step's forward pass runs in: autocast to bfloat16 (weights, gradients and
    the optimiser stay float32), or plain float32. On a CPU with AMX a step takes 0.4x to 0.9x as long
    (benchmarks/bench_train_precision.py)."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def bf16_layout_fixes_on() -> bool:
    """Whether bfloat16 training runs with the layout fixes (models.mobilenet.Float32OnCpu,
    models.heads.channels_last_gradient) that made its steps faster on 2026-12-07."""
    from fecsearch.models import heads, mobilenet

    return mobilenet.STRIDED_DEPTHWISE_IN_FLOAT32 and heads.CHANNELS_LAST_GRADIENT


def set_bf16_layout_fixes(on: bool) -> bool:
    """Turn both layout fixes on or off; returns whether they were on before."""
    from fecsearch.models import heads, mobilenet

    before = bf16_layout_fixes_on()
    mobilenet.STRIDED_DEPTHWISE_IN_FLOAT32 = heads.CHANNELS_LAST_GRADIENT = on
    return before


def legacy_bf16_option(train: Callable) -> Callable:
    """Adds legacy_bf16=False to a training function: True trains with the layout fixes off, every
    layer in bfloat16 as before 2026-12-07: slower, and it repeats the weights trained then bit for bit."""
    import functools

    @functools.wraps(train)
    def run(*args, legacy_bf16: bool = False, **kwargs):
        before = set_bf16_layout_fixes(not legacy_bf16)
        try:
            return train(*args, **kwargs)
        finally:
            set_bf16_layout_fixes(before)

    return run


def validates(epoch: int, epochs: int, every: int) -> bool:
    """Whether epoch (0-based) of epochs ends with a measurement on the validation set: every
    `every`th epoch and always the last; every=0 measures the last only. Validation draws no random
    numbers and changes no weight, so this choice changes a run's time, never its result."""
    return epoch + 1 == epochs or (every > 0 and (epoch + 1) % every == 0)


def triplet_eval(model: FaceEmbedder, faces: torch.Tensor, names: list[str], triplets: list[Triplet],
                 distances=("l2",)) -> dict:
    vectors = model.embed(faces)
    return triplet_accuracy(dict(zip(names, vectors)), triplets, distances)


class Checkpointer:
    """Keeps `<out>.state.pt` (model, optimiser, epoch, metrics) so an interrupted run resumes."""

    def __init__(self, out: Path):
        self.path = out.with_name(out.stem + ".state.pt")

    def load(self, model, optimizer, schedule, steps_per_epoch: int) -> tuple[int, list]:
        """The epoch to start from and the history so far; the schedule is moved to where the run stopped."""
        if not self.path.exists():
            return 0, []
        state = torch.load(self.path, weights_only=True, map_location="cpu")  # the model's device may differ
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch = int(state["epoch"])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for _ in range(epoch * steps_per_epoch):
                schedule.step()
        return epoch, json.loads(state["history"])

    def save(self, model, optimizer, epoch: int, history: list) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                    "history": json.dumps(history)}, tmp)
        tmp.replace(self.path)


def _load_state(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))
