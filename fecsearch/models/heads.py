"""The FECNet head of the paper (section 4.1) and the classifier head of its AFFNet-CL baseline."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    """BN-ReLU6-1x1 conv (bottleneck) then BN-ReLU6-3x3 conv adding `growth` channels."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int = 4):
        super().__init__()
        mid = bottleneck * growth
        self.layers = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU6(inplace=True),
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(inplace=True),
            nn.Conv2d(mid, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


class DenseBlock(nn.Sequential):
    def __init__(self, in_channels: int, layers: int, growth: int):
        super().__init__(*[DenseLayer(in_channels + i * growth, growth) for i in range(layers)])
        self.out_channels = in_channels + layers * growth


# Off: the gradient keeps pooling's layout, as in the weights trained before 2026-12-07
# (benchmarks/bench_train_steps.py compares the two in one run).
CHANNELS_LAST_GRADIENT = True


class _ChannelsLastGradient(torch.autograd.Function):
    """Identity forward; backward hands on its gradient in channels-last layout.

    Pooling's backward returns a gradient in the default layout. Under bfloat16 training the maps
    above it are channels-last, and BatchNorm's backward over mixed layouts takes a slow path: for
    the DenseNet block's final norm (the largest in the head) 169 ms of a 539 ms FaceRes head step
    (benchmarks/RESULTS.md, "Faster bfloat16 training steps").
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def channels_last_gradient(x: torch.Tensor) -> torch.Tensor:
    """x, whose gradient keeps x's channels-last layout (only where training needs it)."""
    if isinstance(x, torch.fx.Proxy):  # a trace for inference (InferenceNetwork) has no gradient
        return x
    if CHANNELS_LAST_GRADIENT and x.requires_grad and x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return _ChannelsLastGradient.apply(x)
    return x


class FeatureHead(nn.Module):
    """1x1 conv -> DenseNet block -> average pool -> FC: the part FECNet trains on a frozen trunk.

    The paper pools 7x7 maps with a 7x7 average pool; pooling the whole map is the same thing
    and also fits trunks whose maps are another size.
    """

    def __init__(self, in_channels: int, block_channels: int = 512, layers: int = 5, growth: int = 64,
                 fc_size: int = 512, dropout: float = 0.5):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, block_channels, 1, bias=False)
        self.block = DenseBlock(block_channels, layers, growth)
        self.norm = nn.BatchNorm2d(self.block.out_channels)
        self.fc = nn.Linear(self.block.out_channels, fc_size)
        self.dropout = nn.Dropout(dropout)
        self.fc_size = fc_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.block(self.reduce(features))
        x = channels_last_gradient(F.relu6(self.norm(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class EmbeddingHead(nn.Module):
    """FECNet: FeatureHead -> dropout -> FC to `dim` -> L2 normalisation."""

    def __init__(self, in_channels: int, dim: int = 16, **kwargs):
        super().__init__()
        self.features = FeatureHead(in_channels, **kwargs)
        self.embed = nn.Linear(self.features.fc_size, dim)

    def forward(self, trunk_features: torch.Tensor) -> torch.Tensor:
        x = self.features.dropout(F.relu(self.features(trunk_features)))
        # normalised in float32 even under bfloat16 autocast: the triplet margins are 0.1 of a squared distance
        return F.normalize(self.embed(x).float(), dim=1)


class ClassifierHead(nn.Module):
    """AFFNet-CL: the same FeatureHead ending in class logits; `penultimate` is the FC output."""

    def __init__(self, in_channels: int, classes: int = 8, **kwargs):
        super().__init__()
        self.features = FeatureHead(in_channels, **kwargs)
        self.classify = nn.Linear(self.features.fc_size, classes)

    def penultimate(self, trunk_features: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(trunk_features))

    def forward(self, trunk_features: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features.dropout(self.penultimate(trunk_features)))
