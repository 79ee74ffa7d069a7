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


def largest_face(faces: list) -> int:
    """Which face a query means when it does not say: the largest (of FoundFace or DetectedFace)."""
    return max(range(len(faces)), key=lambda i: faces[i].area)


# detect_largest leaves out a pyramid level while the largest face found spans this many of its
# P-Net windows. On the 64 test photos and 40 collages of them, leaving levels out changed the largest
# face only below 2.32 windows (benchmarks/probe_largest_face.py; benchmarks/RESULTS.md, "Queries by
# image: the largest face without the finest pyramid levels").
LARGEST_MARGIN = 4.0


@dataclass
class Placement:
    """Where a photo lies on its canvas: offset, scale, and the region (x0, y0, x1, y1) it covers."""
    x: int
    y: int
    scale: float
    region: tuple[int, int, int, int]


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

    def _letterbox(self, image: Image.Image) -> tuple[Image.Image, Placement]:
        from PIL import Image  # here: commands that only read DetectorConfig (query --id) never load Pillow

        canvas = self.config.canvas_size
        inner = canvas * (1.0 - 2.0 * self.config.border)
        scale = inner / max(image.size)
        w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        ox, oy = (canvas - w) // 2, (canvas - h) // 2
        board = Image.new("RGB", (canvas, canvas))
        board.paste(image.resize((w, h), Image.BILINEAR), (ox, oy))
        return board, Placement(ox, oy, scale, (ox, oy, ox + round(image.width * scale),
                                                oy + round(image.height * scale)))

    def detect(self, images: list[Image.Image]) -> list[list[DetectedFace]]:
        return [self.detect_one(image) for image in images]

    def detect_one(self, image: Image.Image) -> list[DetectedFace]:
        board, placed = self._letterbox(image)
        return self._faces(self.cascade.detect(board, placed.region), image, placed)

    def detect_largest(self, image: Image.Image) -> tuple[DetectedFace | None, int | None, int | None]:
        """The largest face of an image (what a query means by default), its number from the left
        and how many faces the image has; both None when faces far smaller than it were not looked for.

        The face is the one detect_one finds largest, to the bit, at less cost: P-Net's finest pyramid
        levels, where most of the time goes, only find faces a few times their window. They are left
        out while the largest face found spans LARGEST_MARGIN of their windows; when it does not (or no
        face is found), the levels it needs are run too, down to all of them.
        """
        import math

        board, placed = self._letterbox(image)
        pyramid = self.cascade.pyramid(board, placed.region)
        levels = len(pyramid.scales)
        # First guess: the face spans half the photo's short side, as in a portrait (a wrong guess costs
        # little: the levels and boxes already run are not run again).
        guess = min(placed.region[2] - placed.region[0], placed.region[3] - placed.region[1]) / 2
        skip = sum(1 for i in range(levels) if pyramid.window(i) * LARGEST_MARGIN <= guess)
        while True:
            faces = self._faces(pyramid.detect(range(skip, levels)), image, placed)
            if skip == 0:  # every level ran: this is detect_one's answer
                if not faces:
                    return None, None, 0
                number = largest_face(faces)
                return faces[number], number, len(faces)
            largest = faces[largest_face(faces)] if faces else None
            size = math.sqrt(largest.area) * placed.scale if largest else 0.0  # canvas pixels
            enough = sum(1 for i in range(levels) if pyramid.window(i) * LARGEST_MARGIN <= size)
            if enough >= skip:
                return largest, None, None
            skip = enough

    def _faces(self, found: tuple[np.ndarray, np.ndarray], image: Image.Image, placed: Placement
               ) -> list[DetectedFace]:
        """The cascade's boxes on the canvas as faces of the image, left to right."""
        import numpy as np  # here: the command line reads DetectorConfig and should start fast

        boxes, points = found
        ox, oy, scale = placed.x, placed.y, placed.scale
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
