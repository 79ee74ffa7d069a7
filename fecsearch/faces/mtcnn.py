"""MTCNN's three stages over the part of a letterboxed canvas that holds the photo.

The networks (faces/mtcnn_nets.py, with the weights facenet-pytorch ships), pyramid, thresholds
and box arithmetic are facenet-pytorch's; neither it nor torchvision is imported. What differs is
where the time goes on a CPU (benchmarks/RESULTS.md, "Indexing throughput, photos"):
  - P-Net runs only on the photo's part of each pyramid level plus one P-Net window (12 px) all
    round, not on the letterbox's empty border: every window that touches the photo is still
    scored, and half a canvas of black is not;
  - pyramid levels and the R-Net/O-Net crops are area-resampled by Pillow from the 8-bit canvas,
    or from a copy of it halved a few times when the output is much smaller (AreaSampler),
    rather than each by PyTorch from a float copy of the whole canvas;
  - every tensor the networks see is channels-last, which their small convolutions run about
    twice as fast on this CPU.
On the 64 test photos it finds the faces facenet-pytorch's detect_face finds on the same canvases
(74 of its 75: one blurred profile at p=0.93 drops below fecsearch's 0.9), boxes within 2% of the
face's width at the median (tests/test_faces.py compares them).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from fecsearch.faces.mtcnn_nets import ONet, PNet, RNet, apply_correction, nms, to_square

P_WINDOW = 12  # P-Net scores 12x12 windows of a level, every 2 pixels


P_STRIDE = 2


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


def _to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W], normalised as MTCNN was trained, channels-last."""
    t = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float()
    return (t - 127.5) * 0.0078125


class Cascade:
    """P-Net -> R-Net -> O-Net on one RGB canvas; boxes and landmarks in canvas pixels."""

    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (net().load_pretrained().to(self.device) for net in (PNet, RNet, ONet))
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

    @torch.inference_mode()
    def detect(self, canvas: Image.Image, region: tuple[int, int, int, int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Faces of `canvas` whose P-Net window touches `region` (x0, y0, x1, y1; default all of it).

        Returns boxes [n, 5] (x1, y1, x2, y2, probability) and landmarks [n, 5, 2].
        """
        region = region or (0, 0, canvas.width, canvas.height)
        canvas = AreaSampler(canvas.convert("RGB"))
        boxes = self._propose(canvas, region)
        if len(boxes):
            boxes = self._refine(canvas, boxes)
        if len(boxes):
            crops = self._crops(canvas, boxes, 48)
            reg, points, prob = self.onet(crops)
            score = prob[:, 1]
            keep = score > self.thresholds[2]
            boxes = torch.cat([boxes[keep, :4], score[keep, None]], 1)
            reg, points = reg[keep], points[keep]
            w = boxes[:, 2] - boxes[:, 0] + 1
            h = boxes[:, 3] - boxes[:, 1] + 1
            points = torch.stack([w[:, None] * points[:, :5] + boxes[:, :1] - 1,
                                  h[:, None] * points[:, 5:] + boxes[:, 1:2] - 1], 2)
            boxes = apply_correction(boxes, reg)
            keep = _nms_min(boxes[:, :4].cpu().numpy(), boxes[:, 4].cpu().numpy(), 0.7)
            return boxes[keep].cpu().numpy(), points[keep].cpu().numpy()
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)

    def _propose(self, canvas: AreaSampler, region) -> torch.Tensor:
        """P-Net over the pyramid: candidate boxes [n, 9] (box, score, box regression)."""
        width, height = canvas.size
        found = []
        for scale in self.scales(width, height):
            level_w, level_h = int(width * scale + 1), int(height * scale + 1)
            sx, sy = level_w / width, level_h / height
            # The photo's part of this level, a window's width more all round, starting on an
            # even pixel so that P-Net's stride-2 grid is the grid of the whole level.
            x0 = max(0, (math.floor(region[0] * sx) - P_WINDOW) // P_STRIDE * P_STRIDE)
            y0 = max(0, (math.floor(region[1] * sy) - P_WINDOW) // P_STRIDE * P_STRIDE)
            x1 = min(level_w, math.ceil(region[2] * sx) + P_WINDOW)
            y1 = min(level_h, math.ceil(region[3] * sy) + P_WINDOW)
            if x1 - x0 < P_WINDOW or y1 - y0 < P_WINDOW:
                continue
            level = canvas.resize((x1 - x0, y1 - y0), (x0 / sx, y0 / sy, x1 / sx, y1 / sy))
            reg, prob = self.pnet(_to_tensor(np.array(level)[None], self.device))
            prob = prob[0, 1]
            hit = prob >= self.thresholds[0]
            cells = hit.nonzero().flip(1).float() + torch.tensor([x0, y0], device=self.device) / P_STRIDE
            if not len(cells):
                continue
            boxes = torch.cat([((P_STRIDE * cells + 1) / scale).floor(),
                               ((P_STRIDE * cells + P_WINDOW) / scale).floor(),
                               prob[hit][:, None], reg[0][:, hit].T], 1)
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return torch.zeros((0, 5), device=self.device)
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        moved = torch.stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                             boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h, boxes[:, 4]], 1)
        return to_square(moved)

    def _refine(self, canvas: AreaSampler, boxes: torch.Tensor) -> torch.Tensor:
        """R-Net keeps the candidates it believes and corrects their boxes."""
        reg, prob = self.rnet(self._crops(canvas, boxes, 24))
        score = prob[:, 1]
        keep = score > self.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], score[keep, None]], 1)
        reg = reg[keep]
        if not len(boxes):
            return boxes
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return to_square(apply_correction(boxes[keep], reg[keep]))

    def _crops(self, canvas: AreaSampler, boxes: torch.Tensor, size: int) -> torch.Tensor:
        # facenet-pytorch's crop: the box clipped to the canvas (1-based inclusive ends), resized.
        b = boxes[:, :4].trunc().cpu()
        x0 = (b[:, 0].clamp(min=1) - 1).tolist()
        y0 = (b[:, 1].clamp(min=1) - 1).tolist()
        x1 = b[:, 2].clamp(max=canvas.size[0]).tolist()
        y1 = b[:, 3].clamp(max=canvas.size[1]).tolist()
        pixels = np.empty((len(x0), size, size, 3), np.uint8)
        for i, box in enumerate(zip(x0, y0, x1, y1)):
            if box[2] > box[0] and box[3] > box[1]:
                pixels[i] = np.asarray(canvas.resize((size, size), box))
            else:
                pixels[i] = 0
        return _to_tensor(pixels, self.device)


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
