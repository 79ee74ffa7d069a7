"""The one preprocessing step for training and queries: face crops -> normalised arrays.

numpy, so that the ONNX runtime prepares faces without torch; the torch tensors training and the
torch runtime use are views of the same arrays."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from fecsearch.faces.images import load_image
from fecsearch.models.config import Preprocess

if TYPE_CHECKING:
    import torch


def prepare_face(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """The one preprocessing step for training and queries: a face crop -> normalised (C, S, S) tensor.

    `image` is either an aligned crop (faces.align_face with preprocess.geometry) or an image
    that already is a face crop (FER, CelebA aligned); it is resized to the model's input.
    """
    return prepare_faces([image], preprocess)[0]


def prepare_faces(images: list[Image.Image], preprocess: Preprocess) -> torch.Tensor:
    """prepare_face for many faces at once, (N, C, S, S): the same numbers, normalised in one step."""
    import torch

    return torch.from_numpy(prepare_face_arrays(images, preprocess))


def prepare_face_arrays(images: list[Image.Image], preprocess: Preprocess) -> np.ndarray:
    """The preprocessing itself: face crops -> float32 (N, C, S, S), normalised by the model's mean and std."""
    if not images:
        return np.zeros((0, preprocess.channels, preprocess.size, preprocess.size), np.float32)
    pixels = np.stack([face_pixels(image, preprocess) for image in images]).astype(np.float32) / 255.0
    pixels = pixels[:, None] if preprocess.channels == 1 else pixels.transpose(0, 3, 1, 2)
    return np.ascontiguousarray((pixels - preprocess.mean) / preprocess.std, dtype=np.float32)


def face_pixels(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """The crop at the model's input size and colour mode, as 8-bit pixels (S, S) or (S, S, 3)."""
    if image.size != (preprocess.size, preprocess.size):
        image = image.resize((preprocess.size, preprocess.size), Image.BICUBIC)
    if preprocess.channels == 1 or not preprocess.colour:
        image = image.convert("L")
    return np.asarray(image.convert("L" if preprocess.channels == 1 else "RGB"))


def load_prepared(paths, preprocess: Preprocess, workers: int = 4) -> torch.Tensor:
    """Decode and prepare every face with the query-time preprocessing: (N, C, S, S).

    Inputs above 64 px are held in float16 (half the memory: 28K faces at 112x112 RGB take 2 GB)
    and turned back to float32 batch by batch."""
    import torch

    def one(p):
        return prepare_face(load_image(p), preprocess)

    with ThreadPoolExecutor(workers) as pool:
        x = torch.stack(list(pool.map(one, paths, chunksize=64)))
    return x.half() if preprocess.size > 64 else x
