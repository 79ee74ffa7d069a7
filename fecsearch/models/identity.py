"""Who a face is: the face-recognition descriptor kept beside each face's expression vector.

The descriptor is FaceRes's (fecsearch/weights/faceres-mobilenet-v1.md): MobileNet-v1 trained to
tell VGGFace2's identities apart, its last map averaged to 1024 values, L2-normalised here so that
the dot product of two descriptors is their cosine. The expression models are not involved: an
index's expression model stays what it is, and every index gets the same identity descriptor.

The crop is chosen by measurement (`benchmarks/identity_geometry.py`, benchmarks/RESULTS.md):
224 px, the size the network was trained at (at 112 px, same-person AUC on the photos' labelled
pairs falls from 0.9999 to 0.73), and a tighter crop than the paper's expression crop (eyes 30% of
the width apart, at 38% of its height).

Runs in ONNX Runtime from `faceres-identity.onnx` (exported, with a parity check, by
`python -m fecsearch.models.onnx_export`), or in torch.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from fecsearch.faces.align import FaceGeometry, align_face
from fecsearch.faces.images import file_sha256
from fecsearch.runtime import WEIGHTS_DIR
from fecsearch.runtime.onnx import RUNTIMES, RuntimeUnavailable, onnx_installed, torch_installed

IDENTITY_MODEL = "faceres-identity"
IDENTITY_DIM = 1024
IDENTITY_SIZE = 224
IDENTITY_GEOMETRY = FaceGeometry(IDENTITY_SIZE, 0.30 * IDENTITY_SIZE, 0.5, 0.38)
IDENTITY_WEIGHTS = WEIGHTS_DIR / "faceres-mobilenet-v1.safetensors"
IDENTITY_GRAPH = WEIGHTS_DIR / f"{IDENTITY_MODEL}.onnx"


def identity_crop(image: Image.Image, landmarks=None, scale: float = 1.0) -> Image.Image:
    """The crop the descriptor sees: aligned by the eyes when landmarks are known (in original-photo
    pixels; `scale`: original pixels per pixel of `image`), else the whole image, taken as a face crop."""
    if landmarks is None:
        return image.convert("RGB").resize((IDENTITY_SIZE, IDENTITY_SIZE), Image.BICUBIC)
    marks = np.asarray(landmarks, np.float64) / scale
    return align_face(image.convert("RGB"), marks[0], marks[1], IDENTITY_GEOMETRY)


def identity_input(crops: list[Image.Image]) -> np.ndarray:
    """Crops -> float32 (N, 3, 224, 224), RGB pixel values 0..255: what the network was trained on."""
    if not crops:
        return np.zeros((0, 3, IDENTITY_SIZE, IDENTITY_SIZE), np.float32)
    pixels = [np.asarray(c.convert("RGB").resize((IDENTITY_SIZE, IDENTITY_SIZE), Image.BICUBIC)
                         if c.size != (IDENTITY_SIZE, IDENTITY_SIZE) else c.convert("RGB")) for c in crops]
    return np.ascontiguousarray(np.stack(pixels).transpose(0, 3, 1, 2), dtype=np.float32)


def identity_checksum() -> str:
    """The sha256 of the weights the descriptor comes from: an index records it with its descriptors."""
    return file_sha256(IDENTITY_WEIGHTS)


class IdentityNetwork:
    """Crops -> (N, 1024) unit descriptors, in ONNX Runtime or torch."""

    batch_size = 32

    def __init__(self, device: str | None = "cpu", runtime: str = "auto", threads: int | None = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime '{runtime}' ({', '.join(RUNTIMES)})")
        if not IDENTITY_WEIGHTS.exists():
            raise FileNotFoundError(f"{IDENTITY_WEIGHTS} is missing; rebuild it with "
                                    f"`python -m fecsearch.models.build_faceres`")
        self.checksum = identity_checksum()
        self.device = str(device or "cpu")
        self._session = self._torch = None
        if runtime in ("auto", "onnx") and onnx_installed() and IDENTITY_GRAPH.exists():
            from fecsearch.runtime.onnx import session

            graph = session(IDENTITY_GRAPH, self.device, threads)
            # a graph exported from other weights than those beside it is never used
            if graph.get_modelmeta().custom_metadata_map.get("weights_sha256") == self.checksum:
                self._session, self.runtime = graph, "onnx"
                return
        if runtime == "onnx":
            raise RuntimeUnavailable(f"--runtime onnx: {IDENTITY_GRAPH.name} is missing or stale (export it with "
                                     f"`python -m fecsearch.models.onnx_export`), or onnxruntime is not installed")
        if not torch_installed():
            raise RuntimeUnavailable(f"the identity descriptor needs onnxruntime and a current {IDENTITY_GRAPH.name}, "
                                     f"or torch (pip install 'fecsearch[torch]')")
        self._torch = identity_torch_module().to(self.device)
        self.runtime = "torch"

    def describe(self, crops: list[Image.Image]) -> np.ndarray:
        out = [self._run(identity_input(crops[i:i + self.batch_size])) for i in range(0, len(crops), self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, IDENTITY_DIM), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(["descriptor"], {"image": x})[0]
        import torch

        with torch.inference_mode():
            return self._torch(torch.from_numpy(x).to(self.device)).cpu().numpy()


def identity_torch_module():
    """The descriptor as a torch module: pixel values 0..255 in, unit 1024-d vectors out (what the
    ONNX graph is exported from)."""
    import torch
    from torch import nn

    from fecsearch.models.mobilenet import MobileNetV1, load_trunk_state
    from fecsearch.models.trunks import load_faceres_weights

    class Descriptor(nn.Module):
        def __init__(self):
            super().__init__()
            self.network = load_trunk_state(MobileNetV1(), load_faceres_weights())

        def forward(self, x):
            return torch.nn.functional.normalize(self.network.descriptor(x), dim=1)

    return Descriptor().eval()
