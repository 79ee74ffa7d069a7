"""What a model is: its family, trunk, head, output and the preprocessing its weights were trained with.

A model's config travels inside its safetensors file (metadata "config"), so the preprocessing
used to embed a query is by construction the one its weights were trained with."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from fecsearch.faces.align import PAPER_GEOMETRY, FaceGeometry

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
