"""One model's prepared faces turned into another's inside a network, so that networks trained on
different inputs can embed the same prepared face together (an ensemble of mixed trunks).

A FaceRes model sees a face aligned like FER's 48 px crops, upscaled with Pillow's bicubic filter
to its input size, in grey on three channels, as 0..255 values (models/config.py,
FACERES_PREPROCESS); a lite model sees the 48 px crop itself, normalised. Both start from the same
aligned 48 px crop, so the lite model's prepared face holds everything the FaceRes model's is made
from: `PreparedFaceAdapter` undoes the lite normalisation, repeats Pillow's resize (the same
weights, horizontal pass first, each pass rounded and clipped to 8 bits as Pillow's is) and applies
the other normalisation. On FER+ crops it gives Pillow's pixels to within one grey level
(tests/test_ensemble.py).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from fecsearch.models.config import Preprocess


def bicubic_matrix(source: int, target: int) -> np.ndarray:
    """(target, source): the weights of Pillow's bicubic resize of a row of `source` pixels to `target`.

    Read from Pillow itself, one unit pixel at a time in 32-bit float mode (no rounding there), so
    the weights are Pillow's by construction rather than a second implementation of its filter."""
    matrix = np.zeros((target, source), np.float64)
    for j in range(source):
        row = np.zeros((1, source), np.float32)
        row[0, j] = 1.0
        matrix[:, j] = np.asarray(Image.fromarray(row, "F").resize((target, 1), Image.BICUBIC))[0]
    return matrix.astype(np.float32)


def adaptable(source: Preprocess, target: Preprocess) -> str | None:
    """Why faces prepared by `source` cannot become faces prepared by `target`, or None when they can."""
    if source.geometry != target.geometry:
        return "they are aligned with different geometries"
    if source.channels != 1:
        return "the shared input must be grey (one channel)"
    if target.colour and target.channels == 3:
        return "the member takes colour, which a grey input cannot give"
    if target.size < source.size:
        return "the member's input is smaller than the shared input (only upscaling is exact)"
    return None


class PreparedFaceAdapter(nn.Module):
    """Faces prepared for `source` (grey, normalised) -> the same faces prepared for `target`."""

    def __init__(self, source: Preprocess, target: Preprocess):
        super().__init__()
        why = adaptable(source, target)
        if why:
            raise ValueError(f"cannot turn {source.size} px faces into {target.size} px ones: {why}")
        self.source, self.target = source, target
        # a constant of the two preprocessings, not a weight: rebuilt, never stored in a checkpoint
        self.register_buffer("matrix", torch.from_numpy(bicubic_matrix(source.size, target.size)), persistent=False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        s, t = self.source, self.target
        pixels = torch.round((faces.float() * s.std + s.mean) * 255)  # the 8-bit grey crop the face was
        if t.size != s.size:
            pixels = (pixels @ self.matrix.T).round().clamp(0, 255)  # rows first, as Pillow resizes
            pixels = (self.matrix @ pixels).round().clamp(0, 255)
        if t.channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        return (pixels / 255 - t.mean) / t.std
