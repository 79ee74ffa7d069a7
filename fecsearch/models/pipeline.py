"""image -> faces -> aligned crops -> prepared tensors -> embeddings: shared by index, query and embed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fecsearch.faces.align import align_detected
from fecsearch.faces.detect import DetectedFace, DetectorConfig, FaceDetector
from fecsearch.faces.images import original_scale
from fecsearch.models.network import FaceEmbedder
from fecsearch.models.preprocess import prepare_faces


@dataclass
class FoundFace:
    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray | None
    crop: Image.Image  # what the model sees, before normalisation

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)


class FacePipeline:
    """Finds the faces of images (or takes each image as one face with cropped=True) and embeds them."""

    def __init__(self, model: FaceEmbedder, cropped: bool = False, detector_config: DetectorConfig | None = None,
                 device: str | torch.device = "cpu"):
        self.model = model
        self.network = model.for_inference()
        self.preprocess = model.config.preprocess
        self.cropped = cropped
        self.detector = None if cropped else FaceDetector(detector_config, device=device)

    def find_faces(self, images: list[Image.Image]) -> list[list[FoundFace]]:
        if self.cropped:
            return [[FoundFace((0.0, 0.0, float(im.width), float(im.height)), 1.0, None, im)] for im in images]
        found = []
        for image, faces in zip(images, self.detector.detect(images)):
            found.append([self._align(image, f) for f in faces])
        return found

    def _align(self, image: Image.Image, face: DetectedFace) -> FoundFace:
        crop = align_detected(image, face, self.preprocess.geometry)
        scale = original_scale(image)  # boxes and landmarks in the original photo's pixels
        box = tuple(float(v) * scale for v in face.box)
        landmarks = face.landmarks * scale if face.landmarks is not None else None
        return FoundFace(box, face.probability, landmarks, crop)

    def embed(self, faces: list[FoundFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.model.config.embedding_size), np.float32)
        batch = prepare_faces([f.crop for f in faces], self.preprocess)
        return self.network.embed(batch)
