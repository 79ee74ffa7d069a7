"""What a model is (family, trunk, head, output, the preprocessing its weights were trained with),
and the named models fecsearch knows. Needs no torch: the command line reads it to start fast.

A model's config travels inside its safetensors file (metadata "config"), so the preprocessing
used to embed a query is by construction the one its weights were trained with."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from fecsearch.faces.align import PAPER_GEOMETRY, FaceGeometry
from fecsearch.runtime import WEIGHTS_DIR

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


# Where the eyes sit in FER2013's 48x48 crops, measured by benchmarks/measure_fer_geometry.py
# (median over 1281 faces): photos are aligned like this for the models trained on those crops.
LITE_GEOMETRY = FaceGeometry(size=48, eye_distance=17.75, eye_center_x=0.5, eye_center_y=0.39)


@dataclass(frozen=True)
class Preprocess:
    size: int
    channels: int  # 1: grey, 3: RGB
    mean: float
    std: float
    geometry: FaceGeometry
    colour: bool = True  # False: grey shown on every channel (models trained on grey faces)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["geometry"] = FaceGeometry(**d["geometry"])
        return cls(**d)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    family: str  # "fecnet" (triplet embedding) or "affnet" (emotion classifier)
    trunk: str  # "facenet", "faceres", or a lite trunk (LITE_WIDTHS: "lite", "lite-x2" twice as wide)
    preprocess: Preprocess
    head: dict = field(default_factory=dict)
    dim: int = 16  # embedding size for fecnet; number of classes for affnet
    output: str = "embedding"  # fecnet: embedding; affnet: penultimate | final
    distance: str = "l2"  # how the index compares vectors: l2 or cosine
    weights: str | None = None  # file name under fecsearch/weights, or None
    classes: tuple[str, ...] = ()
    # Embed a face and its mirror image and average the two (expressions are left-right symmetric;
    # +1.3 points of FER+ vote-triplet accuracy for fecnet-lite-16d, benchmarks/RESULTS.md).
    # An index records whether its vectors were made so, and its queries follow it.
    mirror_average: bool = True
    # Networks of this architecture, trained apart, that embed each face together: their unit vectors
    # concatenated and divided by the square root of their number, a unit vector again whose squared
    # distances are the mean of theirs (models/network.py, MemberEnsemble). Two wide FECNets gain
    # 0.7 points of FER+ vote triplets over the better of them (79.9% against 79.2%; benchmarks/RESULTS.md).
    members: int = 1
    # An ensemble of networks trained on different trunks: the registered single models its members
    # are, in order (empty: `members` networks of this config's own trunk and head). Each member gets
    # the face this config prepares, turned into its own preprocessing inside the network
    # (models/resample.py), so the ensemble still embeds one prepared face.
    member_models: tuple[str, ...] = ()

    @property
    def trunks(self) -> str:
        """The trunks its networks sit on, as `fecsearch models` shows them: lite-x2, 2x lite-x2, ..."""
        counts = Counter(c.trunk if c.preprocess.size == self.preprocess.size else f"{c.trunk} {c.preprocess.size}px"
                         for c in member_configs(self))
        return " + ".join(label if n == 1 else f"{n}x {label}" for label, n in counts.items())

    @property
    def embedding_size(self) -> int:
        if self.family == "affnet" and self.output == "penultimate":
            return self.head.get("fc_size", 512)
        return self.dim * self.members

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["preprocess"] = Preprocess.from_dict(d["preprocess"])
        d["classes"] = tuple(d.get("classes", ()))
        d["member_models"] = tuple(d.get("member_models", ()))
        d.setdefault("mirror_average", False)  # checkpoints written before it existed
        return cls(**d)


PAPER_PREPROCESS = Preprocess(224, 3, 0.5, 128 / 255, PAPER_GEOMETRY)  # facenet-pytorch's standardisation


LITE_PREPROCESS = Preprocess(48, 1, 0.5, 0.25, LITE_GEOMETRY)


# Channel widths of the lite trunks' stages and of their 6x6 output, by trunk name. Every name here
# gets the models of lite_models() below, and an int8 graph for its FECNet (models/quantize.py).
LITE_WIDTHS = {"lite": (32, 64, 128, 256), "lite-x2": (64, 128, 256, 512)}


LITE_HEAD = {"block_channels": 256, "layers": 5, "growth": 32, "fc_size": 512, "dropout": 0.5}


# FaceRes takes RGB pixel values 0..255 (a CK+ identity AUC of 0.996 at 224 px, 0.77 with 0..1
# or -1..1 inputs). The expression models see 112 px (7x7 maps at conv_pw_11, the paper's
# pooling grid) of faces framed like their FER training crops: aligned at 48 px and upscaled,
# grey, so that a photo's face reaches the network as blurred and as colourless as FER's.
FACERES_PREPROCESS = Preprocess(112, 3, 0.0, 1 / 255, LITE_GEOMETRY, colour=False)


def faceres_models(size: int) -> list[ModelConfig]:
    """FECNet-16d (the paper's head) and its AFFNet-CL baseline (-p, -f) on the FaceRes trunk for faces
    of `size` px: fecnet-faceres-16d, affnet-faceres-cl-p, -f at 112 px (7x7 maps), and at another
    size the same names with it (fecnet-faceres64-16d: 4x4 maps, a third of the work of 112 px; FER's
    faces are 48 px, so both see every pixel there is)."""
    preprocess = replace(FACERES_PREPROCESS, size=size)
    tag = "faceres" if size == FACERES_PREPROCESS.size else f"faceres{size}"
    classifier = dict(family="affnet", trunk="faceres", preprocess=preprocess, dim=8, distance="cosine",
                      weights=f"affnet-{tag}-cl.safetensors", classes=EMOTIONS)
    return [ModelConfig(f"fecnet-{tag}-16d", "fecnet", "faceres", preprocess, weights=f"fecnet-{tag}-16d.safetensors"),
            ModelConfig(f"affnet-{tag}-cl-p", output="penultimate", **classifier),
            ModelConfig(f"affnet-{tag}-cl-f", output="final", **classifier)]


def lite_models(trunk: str) -> list[ModelConfig]:
    """FECNet-16d and its AFFNet-CL baseline (-p, -f) on a lite trunk (a LITE_WIDTHS name), for FER's
    48x48 grey crops: fecnet-{trunk}-16d, affnet-{trunk}-cl-p and affnet-{trunk}-cl-f."""
    classifier = dict(family="affnet", trunk=trunk, preprocess=LITE_PREPROCESS, head=LITE_HEAD, dim=8,
                      distance="cosine", weights=f"affnet-{trunk}-cl.safetensors", classes=EMOTIONS)
    return [ModelConfig(f"fecnet-{trunk}-16d", "fecnet", trunk, LITE_PREPROCESS, LITE_HEAD,
                        weights=f"fecnet-{trunk}-16d.safetensors"),
            ModelConfig(f"affnet-{trunk}-cl-p", output="penultimate", **classifier),
            ModelConfig(f"affnet-{trunk}-cl-f", output="final", **classifier)]


MIXED_TRIO = "fecnet-lite-x2-pair-faceres-48d"
MIXED_TRIO_V2 = "fecnet-lite-x2-pair-faceres-48d-v2"
MIXED_DUO = "fecnet-lite-x2-faceres-32d"
_MIXED_TRIO_CONFIG = ModelConfig(MIXED_TRIO, "fecnet", "lite-x2+faceres", LITE_PREPROCESS, LITE_HEAD, members=3,
                                 member_models=("fecnet-lite-x2-16d", "fecnet-lite-x2-16d", "fecnet-faceres-16d"),
                                 mirror_average=False, weights=f"{MIXED_TRIO}.safetensors")


_MODELS = {
    c.name: c
    for c in [
        ModelConfig("fecnet-16d", "fecnet", "facenet", PAPER_PREPROCESS, weights="fecnet-16d.safetensors"),
        ModelConfig("affnet-cl-p", "affnet", "facenet", PAPER_PREPROCESS, dim=8, output="penultimate",
                    distance="cosine", weights="affnet-cl.safetensors", classes=EMOTIONS),
        ModelConfig("affnet-cl-f", "affnet", "facenet", PAPER_PREPROCESS, dim=8, output="final",
                    distance="cosine", weights="affnet-cl.safetensors", classes=EMOTIONS),
        *(c for trunk in LITE_WIDTHS for c in lite_models(trunk)),
        ModelConfig("fecnet-lite-x2-pair-32d", "fecnet", "lite-x2", LITE_PREPROCESS, LITE_HEAD, members=2,
                    weights="fecnet-lite-x2-pair-32d.safetensors"),
        # The pair and a FECNet on the pretrained FaceRes trunk: two trunk families, whose errors differ
        # more than two networks' of one family do. FaceRes gets the pair's 48 px face upscaled inside
        # the network, as its own preprocessing would (models/resample.py). No mirror average: three
        # networks already average away what it did (80.8% of FER+ vote triplets without it, 80.7%
        # with it, for twice the work; benchmarks/RESULTS.md).
        _MIXED_TRIO_CONFIG,
        # The same three networks trained again by a recipe that fits in 90 minutes on a 2-core CPU
        # (fresh seeds, the bfloat16 layout fixes, no validation but the last, the compact heads'
        # caches in bfloat16): its card. It measures as the first did (80.8% of vote triplets, CK+48
        # 86.7%); the first keeps its name, so that indexes built with it keep opening.
        replace(_MIXED_TRIO_CONFIG, name=MIXED_TRIO_V2, weights=f"{MIXED_TRIO_V2}.safetensors"),
        # One compact network and the FaceRes one: the two trunk families without the second compact
        # seed, whose training would take the recipe past 90 minutes on a 2-core CPU.
        ModelConfig(MIXED_DUO, "fecnet", "lite-x2+faceres", LITE_PREPROCESS, LITE_HEAD, members=2,
                    member_models=("fecnet-lite-x2-16d", "fecnet-faceres-16d"),
                    mirror_average=False, weights=f"{MIXED_DUO}.safetensors"),
        *(c for size in (112, 64) for c in faceres_models(size)),
    ]
}


# What `index`, `query` and `serve` use unless told otherwise: the shipped model that measures best
# and whose recipe fits the 90-minute training target (its card,
# fecsearch/weights/fecnet-lite-x2-pair-faceres-48d-v2.md). fecnet-lite-16d is the fast option.
# Indexes built with an earlier default record their model and keep it.
DEFAULT_MODEL = MIXED_TRIO_V2


def list_models() -> list[str]:
    return list(_MODELS)


def get_config(name: str) -> ModelConfig:
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(_MODELS)}") from None


def weights_path(config: ModelConfig) -> Path | None:
    return WEIGHTS_DIR / config.weights if config.weights else None


class MissingWeights(RuntimeError):
    """A model whose weights are not here; the message says how to get them."""


def read_checkpoint_config(path: str | Path) -> ModelConfig:
    """The config stored in a fecsearch safetensors file (read without torch)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a fecsearch checkpoint (no config in its metadata)")
    return ModelConfig.from_json(meta["config"])


def member_configs(config: ModelConfig) -> list[ModelConfig]:
    """The configs of a model's networks: an ensemble's member models', or its own once per network."""
    if config.member_models:
        return [get_config(name) for name in config.member_models]
    return [replace(config, members=1)] * config.members


def trained_config(name: str, checkpoint: str | Path | None = None) -> tuple[ModelConfig, Path]:
    """A named model's config as its weights were trained (their file's preprocessing and head win),
    and the weights file. Raises MissingWeights, saying how to get them, when there are none."""
    config = get_config(name)
    path = Path(checkpoint) if checkpoint else weights_path(config)
    if path is None or not path.exists():
        hint = (
            f"train it with `fecsearch train {config.family} ...` (see the models' cards in "
            f"fecsearch/weights/) and pass --checkpoint, or use the shipped offline model "
            f"'{DEFAULT_MODEL}'"
        )
        raise MissingWeights(f"model '{name}' has no trained weights at {path}; {hint}.")
    stored = read_checkpoint_config(path)
    return replace(config, preprocess=stored.preprocess, head=stored.head, dim=stored.dim, trunk=stored.trunk,
                   members=stored.members, member_models=stored.member_models,
                   classes=stored.classes or config.classes), path


def weights_checksum(model_name: str, checkpoint: str | Path | None) -> str:
    """The sha256 of the weights a model would load: an index records it, and refuses other weights.
    Raises MissingWeights, as loading them would, when there are none."""
    from fecsearch.faces.images import file_sha256

    return file_sha256(trained_config(model_name, checkpoint)[1])


def average_mirrored(plain, mirrored, config: ModelConfig):
    """The vector of a face embedded with its mirror image (numpy arrays, one row per face): their
    mean, put back on the unit sphere for a FECNet, whose space it is; for an ensemble, each member's
    part on its own sphere, as the member alone would give it. Every runtime uses this."""
    import numpy as np

    mean = (plain + mirrored) / 2
    if config.family != "fecnet":
        return mean
    parts = mean.reshape(len(mean), config.members, -1)
    parts = parts / np.maximum(np.linalg.norm(parts, axis=2, keepdims=True), 1e-12)
    return (parts / np.sqrt(config.members)).reshape(len(mean), -1)


def classifiers_of(name: str) -> list[str]:
    """AFFNet-CL's penultimate layer and its final layer (-P, then -F) on the same trunk as a FECNet (for an
    ensemble of mixed trunks, its first member's)."""
    config = get_config(name)
    if config.member_models:
        return classifiers_of(config.member_models[0])
    affnets = [(c.output != "penultimate", n) for n, c in _MODELS.items()
               if c.family == "affnet" and (c.trunk, c.preprocess.size) == (config.trunk, config.preprocess.size)]
    return [n for _, n in sorted(affnets)]


def baseline_of(name: str) -> str:
    """The paper's comparison for a FECNet: AFFNet-CL-P, an emotion classifier's penultimate layer on
    the same trunk."""
    return classifiers_of(name)[0]


DEFAULT_BASELINE = baseline_of(DEFAULT_MODEL)
