"""Frozen feature extractors that the heads sit on."""
from __future__ import annotations

import torch
from torch import nn


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


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class LiteTrunk(nn.Module):
    """A compact VGG-style CNN for 48x48 grey faces: 256 channels on a 6x6 grid."""

    out_channels = 256

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
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
