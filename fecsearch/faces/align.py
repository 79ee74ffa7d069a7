"""Align a face the way the paper does: undo roll, scale the eye distance, centre the eyes."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # detection needs torch; alignment does not
    import numpy as np

    from fecsearch.faces.detect import DetectedFace


@dataclass(frozen=True)
class FaceGeometry:
    """Where the eyes land in an aligned crop.

    The paper (section 4.1) undoes roll and scales the inter-ocular distance to 55 px in a
    224x224 crop. Models with another input size keep those proportions unless their config
    says otherwise (a model trained on tighter crops records its own geometry).
    """

    size: int = 224
    eye_distance: float = 55.0
    eye_center_x: float = 0.5  # fraction of the width
    eye_center_y: float = 0.40  # fraction of the height

    def scaled(self, size: int) -> "FaceGeometry":
        return FaceGeometry(size, self.eye_distance * size / self.size, self.eye_center_x, self.eye_center_y)


PAPER_GEOMETRY = FaceGeometry()


def align_face(image: Image.Image, left_eye, right_eye, geometry: FaceGeometry) -> Image.Image:
    """Rotate so the eye line is horizontal and scale it to geometry.eye_distance, in one resampling."""
    (lx, ly), (rx, ry) = left_eye, right_eye
    dx, dy = rx - lx, ry - ly
    distance = math.hypot(dx, dy) or 1.0
    angle = math.atan2(dy, dx)
    scale = geometry.eye_distance / distance  # output pixels per input pixel
    mx, my = (lx + rx) / 2.0, (ly + ry) / 2.0
    tx, ty = geometry.eye_center_x * geometry.size, geometry.eye_center_y * geometry.size
    # Output pixel (u, v) samples input R(angle) * (u - tx, v - ty) / scale + (mx, my).
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    coeffs = (cos, -sin, mx - cos * tx + sin * ty, sin, cos, my - sin * tx - cos * ty)
    # Shrinking a lot in one bicubic step aliases; halve the source first until close.
    while scale < 0.5 and min(image.size) > 2:
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.BOX)
        coeffs = (coeffs[0] / 2, coeffs[1] / 2, coeffs[2] / 2, coeffs[3] / 2, coeffs[4] / 2, coeffs[5] / 2)
        scale *= 2
    return image.transform((geometry.size, geometry.size), Image.AFFINE, coeffs, Image.BICUBIC)


def align_detected(image: Image.Image, face: DetectedFace, geometry: FaceGeometry) -> Image.Image:
    return align_face(image, face.landmarks[0], face.landmarks[1], geometry)


@dataclass
class FoundFace:
    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray | None
    crop: Image.Image | None  # what the model sees, before normalisation (None: not read, e.g. a stored face)
    time: float | None = None  # videos: seconds into the video of the frame it was found in
    run: tuple[float, float] | None = None  # videos: the span of frames the face stood for (ingest/video.py)
    identity: np.ndarray | None = None  # who the face is (models/identity.py), when described while indexing
    identity_crop: Image.Image | None = None  # the crop that descriptor is made from, until it is

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def largest_face(faces: list) -> int:
    """Which face a query means when it does not say: the largest (of FoundFace or DetectedFace)."""
    return max(range(len(faces)), key=lambda i: faces[i].area)
