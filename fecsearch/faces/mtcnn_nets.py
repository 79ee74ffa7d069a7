"""MTCNN's three networks (Zhang et al., 2016) in plain torch, and the box arithmetic around them.

The weights are the ones the facenet-pytorch package ships (`facenet_pytorch/data/{p,r,o}net.pt`,
MIT licence). They are read as files: importing facenet_pytorch would import torchvision too,
seconds of start-up that a query does not need. Layer names follow those state dicts.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn


def weights_file(name: str) -> Path:
    """facenet-pytorch's saved state dict for one network, found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MTCNN's weights come with the facenet-pytorch package, which is not installed "
                           "(pip install facenet-pytorch)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.pt"


class _Pretrained(nn.Module):
    weights = ""

    def load_pretrained(self) -> "_Pretrained":
        self.load_state_dict(torch.load(weights_file(self.weights), map_location="cpu", weights_only=True))
        return self.eval()


def _flatten_caffe(x: torch.Tensor) -> torch.Tensor:
    # The dense layers were trained in Caffe on (width, height, channel)-ordered features.
    return x.permute(0, 3, 2, 1).flatten(1)  # flatten, not reshape(len(x), -1): exported graphs keep a free batch size


class PNet(_Pretrained):
    """Proposal network: fully convolutional; every 12x12 window (stride 2) gets a face probability
    and a box correction."""

    weights = "pnet"

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not a face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box correction

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(_Pretrained):
    """Refinement network: a 24x24 crop of each candidate -> probability and box correction."""

    weights = "rnet"

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_caffe(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(_Pretrained):
    """Output network: a 48x48 crop -> probability, box correction and five landmarks."""

    weights = "onet"

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # x of the five landmarks, then their y

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_caffe(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


class TorchMtcnn:
    """The three networks in torch (channels-last, which their small convolutions run about twice as
    fast on a CPU), numpy in and out like faces.mtcnn.OnnxMtcnn."""

    runtime = "torch"

    def __init__(self, device: str | torch.device | None = "cpu"):
        self.device = torch.device(device or "cpu")
        self.modules = {name: net().load_pretrained().to(self.device) for name, net in
                        (("pnet", PNet), ("rnet", RNet), ("onet", ONet))}

    @torch.inference_mode()
    def _run(self, name: str, x: np.ndarray) -> tuple[np.ndarray, ...]:
        tensor = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
        return tuple(out.float().cpu().numpy() for out in self.modules[name](tensor))

    def pnet(self, x):
        return self._run("pnet", x)

    def rnet(self, x):
        return self._run("rnet", x)

    def onet(self, x):
        return self._run("onet", x)
