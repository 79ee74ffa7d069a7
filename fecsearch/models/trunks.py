"""Frozen feature extractors that the heads sit on."""
from __future__ import annotations

import torch
from torch import nn

from fecsearch.models.config import LITE_WIDTHS


class FaceNetTrunk(nn.Module):
    """facenet-pytorch's InceptionResnetV1, cut after `mixed_7a`.

    The paper cuts FaceNet NN2 at inception-4e, the last grid reduction (14x14 -> 7x7, 1024
    channels). InceptionResnetV1's matching block is its last reduction, mixed_7a
    (Reduction-B): 1792 channels on a 5x5 grid for a 224x224 input. Everything after it
    (block8, pooling, the identity embedding) is dropped.
    """

    out_channels = 1792

    def __init__(self, pretrained: str | None = "vggface2"):
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        try:
            net = InceptionResnetV1(pretrained=pretrained)
        except Exception as err:  # no network, no cached file: say so, never fall back silently
            raise RuntimeError(
                f"the pretrained FaceNet trunk ('{pretrained}') could not be loaded ({err}). "
                "facenet-pytorch downloads it on first use into ~/.cache/torch/checkpoints; "
                "run once with internet access, or copy 20180402-114759-vggface2.pt there."
            ) from err
        names = ["conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
                 "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a"]
        self.layers = nn.Sequential(*[getattr(net, n) for n in names])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class FaceResTrunk(nn.Module):
    """HSE FaceRes (MobileNet-v1 trained on VGGFace2 identities), cut after `conv_pw_11`.

    As in the paper's FaceNet cut, the last grid reduction and what follows are dropped: 512
    channels at 1/16 of the input, 7x7 for 112x112 faces. `pretrained` loads the converted
    weights shipped in fecsearch/weights (scripts: fecsearch.models.build_faceres).
    """

    out_channels = 512
    cut = 11

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from fecsearch.models.mobilenet import MobileNetV1, load_trunk_state

        self.net = MobileNetV1(upto=self.cut)
        if pretrained:
            load_trunk_state(self.net, load_faceres_weights())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def split(self, tune_blocks: int) -> tuple[nn.Module, nn.Module]:
        """(frozen lower part, last `tune_blocks` blocks): training caches the lower part's output
        once per face and fine-tunes only the blocks above it."""
        if not 0 <= tune_blocks <= self.cut:
            raise ValueError(f"--tune-blocks must be between 0 and {self.cut}")
        blocks = list(self.net.blocks)
        keep = len(blocks) - tune_blocks
        return nn.Sequential(self.net.stem, *blocks[:keep]), nn.Sequential(*blocks[keep:])


FACERES_WEIGHTS = "faceres-mobilenet-v1.safetensors"


def faceres_weights_path():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "weights" / FACERES_WEIGHTS


def load_faceres_weights() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = faceres_weights_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python -m fecsearch.models.build_faceres`")
    return load_file(str(path))


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class LiteTrunk(nn.Module):
    """A compact VGG-style CNN for 48x48 grey faces: three stages that halve the grid, then 256
    channels (the "lite-x2" widths: 512) on a 6x6 grid."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = LITE_WIDTHS["lite"]):
        super().__init__()
        *widths, self.out_channels = widths
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += conv_bn(cin, w)
            if i > 0:
                layers += conv_bn(w, w)
            layers.append(nn.MaxPool2d(2))
            cin = w
        layers += conv_bn(cin, self.out_channels)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
