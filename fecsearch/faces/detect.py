"""Find every face of a photo with MTCNN: box, probability and five landmarks."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


@dataclass
class DetectedFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    probability: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, mouth left, mouth right

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass
class DetectorConfig:
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_probability: float = 0.9
    # Images are letterboxed into a square canvas this big, leaving a border all round:
    # the border lets MTCNN find faces cut by the photo's edge, and one canvas size gives
    # every photo the same pyramid, so faces are found alike whatever the photo's size.
    canvas_size: int = 1024
    border: float = 0.15


class FaceDetector:
    """MTCNN over images of any sizes; returns every face with box, probability, landmarks."""

    def __init__(self, config: DetectorConfig | None = None, device: str | None = "cpu", runtime: str = "onnx",
                 threads: int | None = None):
        """runtime: "onnx" (ONNX Runtime, no torch) or "torch"; threads: ONNX Runtime's threads for
        each network (None: every core; 1 where several images are detected in parallel)."""
        # here, not at import: DetectorConfig is read by commands that never detect
        from fecsearch.faces.mtcnn import Cascade, mtcnn_networks

        self.config = config or DetectorConfig()
        self.device = str(device or "cpu")
        networks = mtcnn_networks(runtime, self.device, threads)
        self.runtime = networks.runtime
        # One photo on every core (a query): its pyramid levels run side by side. With a thread count
        # (indexing detects one photo per core) each photo's levels run one after another.
        level_workers = 1 if threads else min(4, os.cpu_count() or 1)
        self.cascade = Cascade(self.config.min_face_size, self.config.thresholds, networks=networks,
                               level_workers=level_workers)

    def _letterbox(self, image: Image.Image) -> tuple[Image.Image, float, int, int]:
        from PIL import Image  # here: commands that only read DetectorConfig (query --id) never load Pillow

        canvas = self.config.canvas_size
        inner = canvas * (1.0 - 2.0 * self.config.border)
        scale = inner / max(image.size)
        w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        ox, oy = (canvas - w) // 2, (canvas - h) // 2
        board = Image.new("RGB", (canvas, canvas))
        board.paste(image.resize((w, h), Image.BILINEAR), (ox, oy))
        return board, scale, ox, oy

    def detect(self, images: list[Image.Image]) -> list[list[DetectedFace]]:
        return [self.detect_one(image) for image in images]

    def detect_one(self, image: Image.Image) -> list[DetectedFace]:
        import numpy as np  # here: the command line reads DetectorConfig and should start fast

        board, scale, ox, oy = self._letterbox(image)
        photo = (ox, oy, ox + round(image.width * scale), oy + round(image.height * scale))
        boxes, points = self.cascade.detect(board, photo)
        faces = []
        for box, marks in zip(boxes.astype(np.float64), points.astype(np.float64)):
            prob = float(box[4])
            if prob < self.config.min_probability:
                continue
            box = (box[:4] - [ox, oy, ox, oy]) / scale
            marks = (marks - [ox, oy]) / scale
            x1, y1, x2, y2 = box
            # Keep faces whose centre lies in the photo: the border is only there to help.
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if not (0 <= cx < image.width and 0 <= cy < image.height):
                continue
            faces.append(DetectedFace(tuple(float(v) for v in box), prob, marks))
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces
