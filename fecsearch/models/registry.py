"""Named models, each carrying its own preprocessing, and the one function that prepares faces.

A model's config travels inside its safetensors file (metadata "config"), so the preprocessing
used to embed a query is by construction the one its weights were trained with.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..faces import PAPER_GEOMETRY, FaceGeometry
from .heads import ClassifierHead, EmbeddingHead
from .trunks import FaceNetTrunk, FaceResTrunk, LiteTrunk

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

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
    trunk: str  # "facenet", "faceres" or "lite"
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

    @property
    def embedding_size(self) -> int:
        if self.family == "affnet" and self.output == "penultimate":
            return self.head.get("fc_size", 512)
        return self.dim

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["preprocess"] = Preprocess.from_dict(d["preprocess"])
        d["classes"] = tuple(d.get("classes", ()))
        d.setdefault("mirror_average", False)  # checkpoints written before it existed
        return cls(**d)


PAPER_PREPROCESS = Preprocess(224, 3, 0.5, 128 / 255, PAPER_GEOMETRY)  # facenet-pytorch's standardisation
LITE_PREPROCESS = Preprocess(48, 1, 0.5, 0.25, LITE_GEOMETRY)
LITE_HEAD = {"block_channels": 256, "layers": 5, "growth": 32, "fc_size": 512, "dropout": 0.5}
# FaceRes takes RGB pixel values 0..255 (a CK+ identity AUC of 0.996 at 224 px, 0.77 with 0..1
# or -1..1 inputs). The expression models see 112 px (7x7 maps at conv_pw_11, the paper's
# pooling grid) of faces framed like their FER training crops: aligned at 48 px and upscaled,
# grey, so that a photo's face reaches the network as blurred and as colourless as FER's.
FACERES_PREPROCESS = Preprocess(112, 3, 0.0, 1 / 255, LITE_GEOMETRY, colour=False)

_MODELS = {
    c.name: c
    for c in [
        ModelConfig("fecnet-16d", "fecnet", "facenet", PAPER_PREPROCESS, weights="fecnet-16d.safetensors"),
        ModelConfig("affnet-cl-p", "affnet", "facenet", PAPER_PREPROCESS, dim=8, output="penultimate",
                    distance="cosine", weights="affnet-cl.safetensors", classes=EMOTIONS),
        ModelConfig("affnet-cl-f", "affnet", "facenet", PAPER_PREPROCESS, dim=8, output="final",
                    distance="cosine", weights="affnet-cl.safetensors", classes=EMOTIONS),
        ModelConfig("fecnet-lite-16d", "fecnet", "lite", LITE_PREPROCESS, LITE_HEAD,
                    weights="fecnet-lite-16d.safetensors"),
        ModelConfig("affnet-lite-cl-p", "affnet", "lite", LITE_PREPROCESS, LITE_HEAD, dim=8,
                    output="penultimate", distance="cosine", weights="affnet-lite-cl.safetensors",
                    classes=EMOTIONS),
        ModelConfig("affnet-lite-cl-f", "affnet", "lite", LITE_PREPROCESS, LITE_HEAD, dim=8,
                    output="final", distance="cosine", weights="affnet-lite-cl.safetensors",
                    classes=EMOTIONS),
        ModelConfig("fecnet-faceres-16d", "fecnet", "faceres", FACERES_PREPROCESS,
                    weights="fecnet-faceres-16d.safetensors"),
        ModelConfig("affnet-faceres-cl-p", "affnet", "faceres", FACERES_PREPROCESS, dim=8, output="penultimate",
                    distance="cosine", weights="affnet-faceres-cl.safetensors", classes=EMOTIONS),
        ModelConfig("affnet-faceres-cl-f", "affnet", "faceres", FACERES_PREPROCESS, dim=8, output="final",
                    distance="cosine", weights="affnet-faceres-cl.safetensors", classes=EMOTIONS),
    ]
}
DEFAULT_MODEL = "fecnet-lite-16d"


class MissingWeights(RuntimeError):
    pass


def list_models() -> list[str]:
    return list(_MODELS)


def get_config(name: str) -> ModelConfig:
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(_MODELS)}") from None


def prepare_face(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """The one preprocessing step for training and queries: a face crop -> normalised (C, S, S) tensor.

    `image` is either an aligned crop (faces.align_face with preprocess.geometry) or an image
    that already is a face crop (FER, CelebA aligned); it is resized to the model's input.
    """
    return prepare_faces([image], preprocess)[0]


def prepare_faces(images: list[Image.Image], preprocess: Preprocess) -> torch.Tensor:
    """prepare_face for many faces at once, (N, C, S, S): the same numbers, normalised in one step."""
    if not images:
        return torch.zeros(0, preprocess.channels, preprocess.size, preprocess.size)
    pixels = np.stack([face_pixels(image, preprocess) for image in images]).astype(np.float32) / 255.0
    tensor = torch.from_numpy(pixels)
    tensor = tensor.unsqueeze(1) if preprocess.channels == 1 else tensor.permute(0, 3, 1, 2)
    return (tensor - preprocess.mean) / preprocess.std


def face_pixels(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """The crop at the model's input size and colour mode, as 8-bit pixels (S, S) or (S, S, 3)."""
    if image.size != (preprocess.size, preprocess.size):
        image = image.resize((preprocess.size, preprocess.size), Image.BICUBIC)
    if preprocess.channels == 1 or not preprocess.colour:
        image = image.convert("L")
    return np.asarray(image.convert("L" if preprocess.channels == 1 else "RGB"))


class FaceEmbedder(nn.Module):
    """trunk + head; forward() maps prepared faces to the vectors the index stores."""

    def __init__(self, config: ModelConfig, trunk: nn.Module):
        super().__init__()
        self.config = config
        self.trunk = trunk
        head_args = dict(config.head)
        if config.family == "fecnet":
            self.head = EmbeddingHead(trunk.out_channels, dim=config.dim, **head_args)
        else:
            self.head = ClassifierHead(trunk.out_channels, classes=config.dim, **head_args)

    def head_forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.config.family == "fecnet":
            return self.head(features)
        if self.config.output == "penultimate":
            return self.head.penultimate(features)
        return self.head(features)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head_forward(self.trunk(faces))

    def for_inference(self) -> "InferenceNetwork":
        """A frozen copy that embeds faster, for indexing and queries (not for training)."""
        return InferenceNetwork(self)

    @torch.inference_mode()
    def embed(self, faces: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        self.eval()
        device = next(self.parameters()).device
        out = [embed_batch(self, faces[i:i + batch_size].to(device).float(), self.config)
               for i in range(0, len(faces), batch_size)]
        if not out:
            return np.zeros((0, self.config.embedding_size), np.float32)
        return torch.cat(out).numpy().astype(np.float32)


class InferenceNetwork:
    """A FaceEmbedder's weights frozen for inference: each BatchNorm folded into the convolution
    before it and the tensors in channels-last layout, which oneDNN's CPU convolutions run fastest;
    batches of 64 stay in cache. The same function to float precision (tests/test_models.py), about
    3x faster than the eager network at batch 256 on this project's 2-core CPU (benchmarks/RESULTS.md).
    A copy: later changes to the model's weights do not reach it."""

    batch_size = 64

    def __init__(self, model: FaceEmbedder):
        import copy

        from torch.fx.experimental.optimization import fuse

        self.config = model.config
        self.device = next(model.parameters()).device
        network = copy.deepcopy(model).eval()
        try:
            network = fuse(network)
        except Exception:  # a network fx cannot trace: keep its BatchNorms
            pass
        self.network = network.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed(self, faces: torch.Tensor) -> np.ndarray:
        out = [self._forward(faces[i:i + self.batch_size]) for i in range(0, len(faces), self.batch_size)]
        if not out:
            return np.zeros((0, self.config.embedding_size), np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    def _forward(self, faces: torch.Tensor) -> torch.Tensor:
        return embed_batch(self.network, faces.to(self.device).float().contiguous(memory_format=torch.channels_last),
                           self.config)


def embed_batch(network, faces: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The vectors an index stores for a batch of prepared faces: the network's output, or with
    config.mirror_average the mean of the face's and its mirror image's (both ways of embedding,
    eager and inference, go through here)."""
    if not config.mirror_average:
        return network(faces).float().cpu()
    plain, mirrored = network(torch.cat([faces, faces.flip(3)])).float().cpu().chunk(2)
    mean = (plain + mirrored) / 2
    # FECNet's space is the unit sphere: the mean of two unit vectors goes back onto it.
    return F.normalize(mean, dim=1) if config.family == "fecnet" else mean


def build_trunk(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    if config.trunk == "facenet":
        return FaceNetTrunk("vggface2" if pretrained else None)
    if config.trunk == "faceres":
        return FaceResTrunk(pretrained)
    if config.trunk == "lite":
        return LiteTrunk(config.preprocess.channels)
    raise ValueError(f"model '{config.name}': unknown trunk '{config.trunk}' (facenet, faceres or lite)")


def pretrained_trunk(config: ModelConfig) -> bool:
    """Whether the trunk comes pretrained with fecsearch (FaceRes) rather than from a training run."""
    return config.trunk == "faceres"


def weights_path(config: ModelConfig) -> Path | None:
    return WEIGHTS_DIR / config.weights if config.weights else None


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


def create_model(name: str, checkpoint: str | Path | None = None, random_init: bool = False,
                 device: str | torch.device = "cpu") -> FaceEmbedder:
    """Build a registered model with its trained weights.

    Raises MissingWeights (saying what is missing and how to get it) rather than ever returning
    an untrained model, unless random_init=True is asked for explicitly (tests, training).
    """
    config = get_config(name)
    if random_init:
        return FaceEmbedder(config, build_trunk(config, pretrained=False)).to(device)
    path = Path(checkpoint) if checkpoint else weights_path(config)
    if path is None or not path.exists():
        hint = (
            f"train it with `fecsearch train {config.family} ...` (see the models' cards in "
            f"fecsearch/weights/) and pass --checkpoint, or use the shipped offline model "
            f"'{DEFAULT_MODEL}'"
        )
        raise MissingWeights(f"model '{name}' has no trained weights at {path}; {hint}.")
    stored = read_checkpoint_config(path)
    # A checkpoint's preprocessing and head win: they are what its weights were trained with.
    config = replace(config, preprocess=stored.preprocess, head=stored.head, dim=stored.dim,
                     trunk=stored.trunk, classes=stored.classes or config.classes)
    # The whole network is in the checkpoint, trunk included: no pretrained download needed.
    model = FaceEmbedder(config, build_trunk(config, pretrained=False))
    state = load_file(str(path))
    model.load_state_dict(state)
    return model.to(device).eval()
