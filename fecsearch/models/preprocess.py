"""The one preprocessing step for training and queries: face crops -> normalised tensors."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from fecsearch.faces.images import load_image
from fecsearch.models.config import Preprocess


def prepare_face(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """The one preprocessing step for training and queries: a face crop -> normalised (C, S, S) tensor.

    `image` is either an aligned crop (faces.align_face with preprocess.geometry) or an image
    that already is a face crop (FER, CelebA aligned); it is resized to the model's input.
    """
    return prepare_faces([image], preprocess)[0]


def prepare_faces(images: list[Image.Image], preprocess: Preprocess) -> torch.Tensor:
    """prepare_face for many faces at once, (N, C, S, S): the same numbers, normalised in one step."""
    if not images:
        return torch.zeros(0, preprocess.channels, preprocess.size, preprocess.size)
    pixels = np.stack([face_pixels(image, preprocess) for image in images]).astype(np.float32) / 255.0
    tensor = torch.from_numpy(pixels)
    tensor = tensor.unsqueeze(1) if preprocess.channels == 1 else tensor.permute(0, 3, 1, 2)
    return (tensor - preprocess.mean) / preprocess.std


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
    def one(p):
        return prepare_face(load_image(p), preprocess)

    with ThreadPoolExecutor(workers) as pool:
        x = torch.stack(list(pool.map(one, paths, chunksize=64)))
    return x.half() if preprocess.size > 64 else x
