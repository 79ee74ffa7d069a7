"""The network: trunk + head, and its frozen, faster copy for indexing and queries."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fecsearch.models.config import LITE_WIDTHS, ModelConfig, average_mirrored, member_configs
from fecsearch.models.heads import ClassifierHead, EmbeddingHead
from fecsearch.models.resample import PreparedFaceAdapter
from fecsearch.models.trunks import FaceNetTrunk, FaceResTrunk, LiteTrunk


class Embedder(nn.Module):
    """A network that maps prepared faces to the vectors an index stores (forward), with its config."""

    config: ModelConfig

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
        return np.concatenate(out).astype(np.float32)


class FaceEmbedder(Embedder):
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


class MemberEnsemble(Embedder):
    """FECNets trained apart, embedding together (config.members of them): each member's unit vector,
    concatenated and divided by the square root of their number. Its weights are the members' under
    members.0., members.1., ... (train/ensemble.py joins trained checkpoints). Members of another
    preprocessing (config.member_models) get the prepared face turned into theirs first."""

    def __init__(self, config: ModelConfig, members: list[FaceEmbedder]):
        super().__init__()
        if config.family != "fecnet" or len(members) != config.members:
            raise ValueError(f"model '{config.name}': an ensemble is {config.members} FECNets, got "
                             f"{len(members)} {config.family} networks")
        self.config = config
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList([nn.Identity() if m.config.preprocess == config.preprocess
                                     else PreparedFaceAdapter(config.preprocess, m.config.preprocess)
                                     for m in members])
        self.scale = 1 / float(np.sqrt(len(members)))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(adapt(faces)) for member, adapt in zip(self.members, self.inputs)], dim=1) * self.scale


def build_network(config: ModelConfig, pretrained: bool = True) -> Embedder:
    """A model's network, untrained unless its trunk comes pretrained: one trunk + head, or an ensemble of them."""
    if config.members == 1:
        return FaceEmbedder(config, build_trunk(config, pretrained))
    return MemberEnsemble(config, [FaceEmbedder(one, build_trunk(one, pretrained)) for one in member_configs(config)])


class InferenceNetwork:
    """An Embedder's weights frozen for inference: each BatchNorm folded into the convolution
    before it and the tensors in channels-last layout, which oneDNN's CPU convolutions run fastest;
    batches of 64 stay in cache. The same function to float precision (tests/test_models.py), about
    3x faster than the eager network at batch 256 on this project's 2-core CPU (benchmarks/RESULTS.md).
    A copy: later changes to the model's weights do not reach it."""

    batch_size = 64

    def __init__(self, model: Embedder):
        import copy

        from torch.fx.experimental.optimization import fuse

        self.config = model.config
        self.device = next(model.parameters()).device
        if self.device.type == "cuda":
            # An H100 ran the default model 1.6x to 1.8x as fast in batches of 256 as of 64 (bench_gpu.py).
            self.batch_size = 256
        network = copy.deepcopy(model).eval()
        try:
            network = fuse(network)
        except Exception:  # a network fx cannot trace: keep its BatchNorms
            pass
        self.network = network.to(memory_format=torch.channels_last)

    runtime = "torch"
    precision = "fp32"

    @torch.inference_mode()
    def embed(self, faces: torch.Tensor | np.ndarray) -> np.ndarray:
        """Prepared faces (models.preprocess.prepare_faces), a tensor or an array -> their vectors."""
        if isinstance(faces, np.ndarray):
            faces = torch.from_numpy(faces)
        out = [self._forward(faces[i:i + self.batch_size]) for i in range(0, len(faces), self.batch_size)]
        if not out:
            return np.zeros((0, self.config.embedding_size), np.float32)
        return np.concatenate(out).astype(np.float32)

    def _forward(self, faces: torch.Tensor) -> np.ndarray:
        return embed_batch(self.network, faces.to(self.device).float().contiguous(memory_format=torch.channels_last),
                           self.config)


def embed_batch(network, faces: torch.Tensor, config: ModelConfig) -> np.ndarray:
    """The vectors an index stores for a batch of prepared faces: the network's output, or with
    config.mirror_average that of the face and its mirror image averaged (config.average_mirrored,
    which the ONNX runtime uses too)."""
    if not config.mirror_average:
        return network(faces).float().cpu().numpy()
    plain, mirrored = network(torch.cat([faces, faces.flip(3)])).float().cpu().numpy().reshape(2, len(faces), -1)
    return average_mirrored(plain, mirrored, config)


def build_trunk(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    if config.trunk == "facenet":
        return FaceNetTrunk("vggface2" if pretrained else None)
    if config.trunk == "faceres":
        return FaceResTrunk(pretrained)
    if config.trunk in LITE_WIDTHS:
        return LiteTrunk(config.preprocess.channels, LITE_WIDTHS[config.trunk])
    known = ", ".join(["facenet", "faceres", *LITE_WIDTHS])
    raise ValueError(f"model '{config.name}': unknown trunk '{config.trunk}' ({known})")


def pretrained_trunk(config: ModelConfig) -> bool:
    """Whether the trunk comes pretrained with fecsearch (FaceRes) rather than from a training run."""
    return config.trunk == "faceres"
