"""Align a face the way the paper does: undo roll, scale the eye distance, centre the eyes."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # detection needs torch; alignment does not
    import numpy as np
    from PIL import Image

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
    # Shrinking a lot in one bicubic step aliases: average f x f blocks of the source first (f a
    # power of two), until the bicubic step shrinks by less than 2.
    factor = 1
    while scale < 0.5 and min(image.size) > 2 * factor:
        factor *= 2
        scale *= 2
    if factor > 1:
        image, (x0, y0) = _around_crop(image, coeffs, geometry.size, factor)
        image = image.reduce(factor)
        coeffs = (coeffs[0] / factor, coeffs[1] / factor, (coeffs[2] - x0) / factor,
                  coeffs[3] / factor, coeffs[4] / factor, (coeffs[5] - y0) / factor)
    from PIL import Image  # here: the models' configs import FaceGeometry; `query --id` never loads Pillow

    return image.transform((geometry.size, geometry.size), Image.AFFINE, coeffs, Image.BICUBIC)


def _around_crop(image: Image.Image, coeffs, size: int, factor: int) -> tuple[Image.Image, tuple[int, int]]:
    """The part of `image` an aligned crop reads, with bicubic's reach to spare, its corners on
    multiples of `factor`: averaging its blocks gives the same pixels as averaging the whole photo's,
    for a fraction of the work (a face is a small part of most photos)."""
    corners = [(u, v) for u in (0, size) for v in (0, size)]
    xs = [coeffs[0] * u + coeffs[1] * v + coeffs[2] for u, v in corners]
    ys = [coeffs[3] * u + coeffs[4] * v + coeffs[5] for u, v in corners]
    spare = 3 * factor  # bicubic reads 2 pixels of the reduced image each side; one more for rounding
    x0 = max(0, math.floor((min(xs) - spare) / factor) * factor)
    y0 = max(0, math.floor((min(ys) - spare) / factor) * factor)
    x1 = min(image.width, math.ceil((max(xs) + spare) / factor) * factor)
    y1 = min(image.height, math.ceil((max(ys) + spare) / factor) * factor)
    if x1 <= x0 or y1 <= y0:  # the crop lies off the photo: the transform fills it with black
        x0, y0, x1, y1 = 0, 0, min(image.width, factor), min(image.height, factor)
    return image.crop((x0, y0, x1, y1)), (x0, y0)


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
