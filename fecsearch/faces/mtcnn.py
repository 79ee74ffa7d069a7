"""MTCNN's three stages over the part of a letterboxed canvas that holds the photo.

The networks (faces/mtcnn_nets.py, with the weights facenet-pytorch ships), pyramid, thresholds
and box arithmetic are facenet-pytorch's; neither it nor torchvision is imported. The arithmetic is
numpy and the networks run in ONNX Runtime (no torch at all) or in torch (MtcnnNetworks). What differs is
where the time goes on a CPU (benchmarks/RESULTS.md, "Indexing throughput, photos"):
  - P-Net runs only on the photo's part of each pyramid level plus one P-Net window (12 px) all
    round, not on the letterbox's empty border: every window that touches the photo is still
    scored, and half a canvas of black is not;
  - pyramid levels and the R-Net/O-Net crops are area-resampled by Pillow from the 8-bit canvas,
    or from a copy of it halved a few times when the output is much smaller (AreaSampler),
    rather than each by PyTorch from a float copy of the whole canvas;
  - in torch, every tensor the networks see is channels-last, which their small convolutions run
    about twice as fast on this CPU.
On the 64 test photos it finds the faces facenet-pytorch's detect_face finds on the same canvases
(74 of its 75: one blurred profile at p=0.93 drops below fecsearch's 0.9), boxes within 2% of the
face's width at the median (tests/test_faces.py compares them).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from fecsearch.runtime import WEIGHTS_DIR

P_WINDOW = 12  # P-Net scores 12x12 windows of a level, every 2 pixels


P_STRIDE = 2


class MtcnnNetworks(Protocol):
    """The three networks on float32 (N, 3, H, W) inputs (mtcnn_input), numpy in and out."""

    def pnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # box corrections, probabilities
        ...

    def rnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ...

    def onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # ..., landmarks, ...
        ...


def onnx_file(name: str) -> Path:
    """The exported graph of one network ("pnet", "rnet", "onet"), shipped with fecsearch."""
    return WEIGHTS_DIR / f"mtcnn-{name}.onnx"


class OnnxMtcnn:
    """MTCNN's networks in ONNX Runtime, from the graphs `python -m fecsearch.models.onnx_export` writes."""

    runtime = "onnx"

    def __init__(self, device: str | None = "cpu", threads: int | None = None):
        from fecsearch.runtime.onnx import session

        self._sessions = {name: session(onnx_file(name), device, threads) for name in ("pnet", "rnet", "onet")}

    def _run(self, name: str, x: np.ndarray):
        return self._sessions[name].run(None, {"image": x})

    def pnet(self, x):
        return tuple(self._run("pnet", x))

    def rnet(self, x):
        return tuple(self._run("rnet", x))

    def onet(self, x):
        return tuple(self._run("onet", x))


def mtcnn_networks(runtime: str = "onnx", device: str | None = "cpu", threads: int | None = None) -> MtcnnNetworks:
    if runtime == "onnx":
        return OnnxMtcnn(device, threads)
    from fecsearch.faces.mtcnn_nets import TorchMtcnn

    return TorchMtcnn(device)


class AreaSampler:
    """Area-resamples boxes of one image, reading from a copy reduced by 2, 4, 8... when the output
    is small enough.

    Image.reduce(2) averages 2x2 blocks, so a box resampled from the copy reduced by f costs about
    1/f^2 of resampling it from the image and, while each output pixel still covers at least
    `min_span` reduced pixels, averages nearly the same pixels. MTCNN resamples the same canvas a
    dozen times for its pyramid and again for every candidate box: this is what keeps that cheap.
    """

    def __init__(self, image: Image.Image, min_span: float = 4.0, smallest: int = 32):
        self.min_span = min_span
        self.copies = [(1, image)]
        while min(self.copies[-1][1].size) >= 2 * smallest:
            factor, copy = self.copies[-1]
            self.copies.append((2 * factor, copy.reduce(2)))

    @property
    def size(self) -> tuple[int, int]:
        return self.copies[0][1].size

    def resize(self, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
        span = min((box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1])
        factor, copy = self.copies[0]
        for f, c in self.copies[1:]:
            if span / f < self.min_span:
                break
            factor, copy = f, c
        return copy.resize(size, Image.BOX, box=tuple(v / factor for v in box))


def mtcnn_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W], normalised as MTCNN was trained."""
    return (pixels.transpose(0, 3, 1, 2).astype(np.float32) - 127.5) * 0.0078125


class Cascade:
    """P-Net -> R-Net -> O-Net on one RGB canvas; boxes and landmarks in canvas pixels."""

    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709,
                 networks: MtcnnNetworks | None = None, level_workers: int = 1):
        """level_workers > 1 runs that many pyramid levels at once (one photo on every core, as a
        query does; indexing detects a photo per core and keeps 1)."""
        self.networks = networks or mtcnn_networks()
        self.level_workers = level_workers
        self._pool = None
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor

    def scales(self, width: int, height: int) -> list[float]:
        """facenet-pytorch's pyramid: from 12/min_face_size down while the short side is >= 12 px."""
        scale = 12.0 / self.min_face_size
        short = min(width, height) * scale
        out = []
        while short >= 12:
            out.append(scale)
            scale *= self.factor
            short *= self.factor
        return out

    def detect(self, canvas: Image.Image, region: tuple[int, int, int, int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Faces of `canvas` whose P-Net window touches `region` (x0, y0, x1, y1; default all of it).

        Returns boxes [n, 5] (x1, y1, x2, y2, probability) and landmarks [n, 5, 2].
        """
        return self.pyramid(canvas, region, widened=False).detect()

    def pyramid(self, canvas: Image.Image, region: tuple[int, int, int, int] | None = None,
                widened: bool = True) -> Pyramid:
        """The canvas's pyramid, for detections over some of its levels (Pyramid.detect); widened=False
        when one detection over every level is all it will run (nothing kept for a later one)."""
        region = region or (0, 0, canvas.width, canvas.height)
        sampler = AreaSampler(canvas if canvas.mode == "RGB" else canvas.convert("RGB"))  # convert() copies
        return Pyramid(self, sampler, region, widened)

    def _finish(self, canvas: AreaSampler, candidates: np.ndarray, seen: dict | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """R-Net and O-Net on P-Net's candidates [n, 9]: boxes [n, 5] and landmarks [n, 5, 2].
        `seen` keeps each network's answer for each box it was shown on this canvas (Pyramid.detect)."""
        boxes = self._refine(canvas, self._after_pnet(candidates), seen) if len(candidates) else candidates
        if not len(boxes):
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        reg, points, prob = self._network("onet", canvas, boxes, 48, seen)
        score = prob[:, 1]
        keep = score > self.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg, points = reg[keep], points[keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        points = np.stack([w[:, None] * points[:, :5] + boxes[:, :1] - 1,
                           h[:, None] * points[:, 5:] + boxes[:, 1:2] - 1], 2)
        boxes = apply_correction(boxes, reg)
        keep = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        return boxes[keep].astype(np.float32), points[keep].astype(np.float32)

    @staticmethod
    def _after_pnet(candidates: np.ndarray) -> np.ndarray:
        """The levels' candidates after NMS across levels, moved by P-Net's corrections, squared."""
        boxes = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        moved = np.stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                          boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h, boxes[:, 4]], 1)
        return to_square(moved)

    def _workers(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.level_workers, thread_name_prefix="mtcnn")
        return self._pool

    def _level(self, canvas: AreaSampler, scale: float, region) -> np.ndarray | None:
        """One pyramid level's candidates after their own NMS, or None."""
        width, height = canvas.size
        level_w, level_h = int(width * scale + 1), int(height * scale + 1)
        sx, sy = level_w / width, level_h / height
        # The photo's part of this level, a window's width more all round, starting on an
        # even pixel so that P-Net's stride-2 grid is the grid of the whole level.
        x0 = max(0, (math.floor(region[0] * sx) - P_WINDOW) // P_STRIDE * P_STRIDE)
        y0 = max(0, (math.floor(region[1] * sy) - P_WINDOW) // P_STRIDE * P_STRIDE)
        x1 = min(level_w, math.ceil(region[2] * sx) + P_WINDOW)
        y1 = min(level_h, math.ceil(region[3] * sy) + P_WINDOW)
        if x1 - x0 < P_WINDOW or y1 - y0 < P_WINDOW:
            return None
        level = canvas.resize((x1 - x0, y1 - y0), (x0 / sx, y0 / sy, x1 / sx, y1 / sy))
        reg, prob = self.networks.pnet(mtcnn_input(np.asarray(level)[None]))
        prob = prob[0, 1]
        hit = prob >= self.thresholds[0]
        ys, xs = np.nonzero(hit)
        if not len(xs):
            return None
        cells = np.stack([xs, ys], 1).astype(np.float32) + np.array([x0, y0], np.float32) / P_STRIDE
        boxes = np.concatenate([np.floor((P_STRIDE * cells + 1) / np.float32(scale)),
                                np.floor((P_STRIDE * cells + P_WINDOW) / np.float32(scale)),
                                prob[hit][:, None], reg[0][:, hit].T], 1).astype(np.float32)
        return boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)]

    def _refine(self, canvas: AreaSampler, boxes: np.ndarray, seen: dict | None = None) -> np.ndarray:
        """R-Net keeps the candidates it believes and corrects their boxes."""
        reg, prob = self._network("rnet", canvas, boxes, 24, seen)
        score = prob[:, 1]
        keep = score > self.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg = reg[keep]
        if not len(boxes):
            return boxes
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return to_square(apply_correction(boxes[keep], reg[keep]))

    def _network(self, name: str, canvas: AreaSampler, boxes: np.ndarray, size: int, seen: dict | None):
        """R-Net or O-Net on the boxes' crops; with `seen`, only on boxes it was not shown before.
        Each box's answer is its own (the networks see each crop alone), so gathered answers are the
        ones a single run on all the boxes gives (tests/test_faces.py compares the faces found)."""
        run = getattr(self.networks, name)
        if seen is None:
            return run(self._crops(canvas, boxes, size))
        answers = seen.setdefault(name, {})
        keys = [box.tobytes() for box in boxes[:, :4]]
        new = [i for i, key in enumerate(keys) if key not in answers]
        if new:
            outputs = run(self._crops(canvas, boxes[new], size))
            for row, i in enumerate(new):
                answers[keys[i]] = tuple(output[row] for output in outputs)
        return tuple(np.stack([answers[key][n] for key in keys]) for n in range(len(answers[keys[0]])))

    def _crops(self, canvas: AreaSampler, boxes: np.ndarray, size: int) -> np.ndarray:
        # facenet-pytorch's crop: the box clipped to the canvas (1-based inclusive ends), resized.
        b = np.trunc(boxes[:, :4])
        x0 = (np.maximum(b[:, 0], 1) - 1).tolist()
        y0 = (np.maximum(b[:, 1], 1) - 1).tolist()
        x1 = np.minimum(b[:, 2], canvas.size[0]).tolist()
        y1 = np.minimum(b[:, 3], canvas.size[1]).tolist()
        pixels = np.zeros((len(x0), size, size, 3), np.uint8)
        for i, box in enumerate(zip(x0, y0, x1, y1)):
            if box[2] > box[0] and box[3] > box[1]:
                pixels[i] = np.asarray(canvas.resize((size, size), box))
        return mtcnn_input(pixels)


class Pyramid:
    """One canvas's pyramid levels, each run through P-Net once, when a detection first needs it.

    detect(levels) runs the cascade on the candidates of some levels only. P-Net's 12 px window
    at a level of scale s covers 12/s canvas pixels, so leaving out the finest levels leaves out
    the smallest faces, and little else (FaceDetector.detect_largest relies on that). A second
    detect over more levels reuses the levels already run.
    """

    def __init__(self, cascade: Cascade, canvas: AreaSampler, region: tuple[int, int, int, int],
                 widened: bool = True):
        self.cascade = cascade
        self.canvas = canvas
        self.region = region
        self.scales = cascade.scales(*canvas.size)  # finest (largest scale) first
        self._candidates: dict[int, np.ndarray | None] = {}
        # R-Net's and O-Net's answers by box, for a later detect over more levels
        self._seen: dict | None = {} if widened else None

    def window(self, level: int) -> float:
        """How many canvas pixels P-Net's window spans at this level."""
        return P_WINDOW / self.scales[level]

    def detect(self, levels=None) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [n, 5] and landmarks [n, 5, 2] found from these levels (default: all)."""
        levels = sorted(range(len(self.scales)) if levels is None else levels)
        missing = [i for i in levels if i not in self._candidates]
        run = lambda i: self.cascade._level(self.canvas, self.scales[i], self.region)  # noqa: E731
        if self.cascade.level_workers > 1 and len(missing) > 1:
            # Levels are independent: while one is resampled (Pillow lets the GIL go) another runs
            # in ONNX Runtime. Each level's candidates are kept apart and joined in the pyramid's
            # order, so the boxes are the same as one level at a time.
            found = list(self.cascade._workers().map(run, missing))
        else:
            found = [run(i) for i in missing]
        self._candidates.update(zip(missing, found))
        joined = [self._candidates[i] for i in levels if self._candidates[i] is not None]
        candidates = np.concatenate(joined) if joined else np.zeros((0, 9), np.float32)
        return self.cascade._finish(self.canvas, candidates, self._seen)


def apply_correction(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Move each box's corners by the network's correction, in units of its (1-based inclusive) size."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg[:, :4] * np.stack([w, h, w, h], 1)
    return out


def to_square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square on the same centre (the next network's input is square)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out = boxes.copy()
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


# Up to this many boxes, nms compares every pair at once (a matrix of n^2 overlaps: 10x faster for
# MTCNN's usual 50 to 200 candidates); above it, box by box, in memory proportional to n.
NMS_MATRIX_LIMIT = 1500


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression by intersection over union: the indices kept, best first."""
    b = boxes.astype(np.float64)
    s = scores.astype(np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    order = np.argsort(-s, kind="stable")
    if len(order) <= NMS_MATRIX_LIMIT:
        return _nms_by_matrix(b[order], area[order], threshold, order)
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        union = area[i] + area[rest] - inter
        order = rest[~(inter > threshold * union)]
    return np.asarray(keep, dtype=np.int64)


def _nms_by_matrix(b: np.ndarray, area: np.ndarray, threshold: float, order: np.ndarray) -> np.ndarray:
    """nms's greedy pass over boxes already sorted best first, every overlap computed at once with
    the same arithmetic as the box-by-box pass (tests/test_faces.py holds them equal)."""
    w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    suppresses = inter > threshold * (area[:, None] + area[None, :] - inter)
    removed = np.zeros(len(b), bool)
    keep = []
    for i in range(len(b)):
        if not removed[i]:
            keep.append(i)
            removed |= suppresses[i]
    return order[keep].astype(np.int64)


def _nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """MTCNN's last NMS: overlap measured against the smaller box, so a box inside another goes."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order = np.argsort(scores)[::-1]
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]) + 1)
        h = np.maximum(0.0, np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]) + 1)
        order = rest[w * h / np.minimum(area[i], area[rest]) <= threshold]
    return np.asarray(keep, dtype=np.int64)
