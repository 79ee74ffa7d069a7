"""image -> faces -> aligned crops -> prepared tensors -> embeddings: shared by index, query and embed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from fecsearch.faces.align import FoundFace, align_detected
from fecsearch.faces.detect import DetectedFace, DetectorConfig, FaceDetector, largest_face
from fecsearch.faces.images import BadImage, load_image, original_scale
from fecsearch.models.preprocess import prepare_face_arrays
from fecsearch.runtime.onnx import onnx_installed


class FacePipeline:
    """Finds the faces of images (or takes each image as one face with cropped=True) and embeds them.

    `network` is what models.inference.load_inference gives (ONNX Runtime or torch). MTCNN runs in
    ONNX Runtime unless runtime="torch" or onnxruntime is missing; `threads` caps its threads."""

    def __init__(self, network, cropped: bool = False, detector_config: DetectorConfig | None = None,
                 device: str | None = "cpu", runtime: str = "auto", threads: int | None = None):
        self.network = network
        self.config = network.config
        self.preprocess = network.config.preprocess
        self.cropped = cropped
        detector_runtime = "onnx" if runtime != "torch" and onnx_installed() else "torch"
        self._identity_args = (device, runtime, threads)
        self.identity = None
        self.detector = None if cropped else FaceDetector(detector_config, device=device, runtime=detector_runtime,
                                                          threads=threads)

    def find_faces(self, images: list[Image.Image]) -> list[list[FoundFace]]:
        if self.cropped:
            return [[FoundFace((0.0, 0.0, float(im.width), float(im.height)), 1.0, None, im)] for im in images]
        found = []
        for image, faces in zip(images, self.detector.detect(images)):
            found.append([self._align(image, f) for f in faces])
        return found

    def identity_network(self):
        """The identity descriptor's network (models/identity.py), made on first use: videos follow
        faces by who they are."""
        if self.identity is None:
            from fecsearch.models.identity import IdentityNetwork

            self.identity = IdentityNetwork(*self._identity_args)
        return self.identity

    def face_of(self, image: Image.Image, face: int | None = None
                ) -> tuple[FoundFace | None, int | None, int | None]:
        """One face of an image, aligned: the face-th from the left (None: the largest), its number, and
        how many faces the image has; (None, face, count) when there is no such face. Only the chosen
        face is aligned, which is all a query needs. The largest face is the one find_faces would
        find largest, but faces far smaller than it are not looked for: its number and the count are
        then None (FaceDetector.detect_largest)."""
        if self.cropped:
            found = self.find_faces([image])[0]
        elif face is None:
            largest, number, count = self.detector.detect_largest(image)
            return (self._align(image, largest) if largest else None), number, count
        else:
            found = self.detector.detect_one(image)
        if not found:
            return None, face or 0, 0
        number = largest_face(found) if face is None else face
        if not 0 <= number < len(found):
            return None, number, len(found)
        chosen = found[number]
        return (chosen if self.cropped else self._align(image, chosen)), number, len(found)

    def _align(self, image: Image.Image, face: DetectedFace) -> FoundFace:
        crop = align_detected(image, face, self.preprocess.geometry)
        scale = original_scale(image)  # boxes and landmarks in the original photo's pixels
        box = tuple(float(v) * scale for v in face.box)
        landmarks = face.landmarks * scale if face.landmarks is not None else None
        return FoundFace(box, face.probability, landmarks, crop)

    def prepare(self, faces: list[FoundFace]) -> np.ndarray:
        """The faces' crops as the network's input (models.preprocess.prepare_face_arrays)."""
        return prepare_face_arrays([f.crop for f in faces], self.preprocess)

    def embed(self, faces: list[FoundFace], prepared: np.ndarray | None = None) -> np.ndarray:
        """The faces' vectors; `prepared`: their crops already prepared (indexing's workers do it)."""
        if not faces:
            return np.zeros((0, self.config.embedding_size), np.float32)
        return self.network.embed(self.prepare(faces) if prepared is None else prepared)


@dataclass
class EmbeddedFaces:
    """The faces found in a list of files: one row per face."""
    paths: list[str]
    vectors: np.ndarray
    boxes: list[tuple[float, float, float, float]]
    skipped: list[str]  # one sentence per file that could not be read, naming it


def embed_files(pipeline: FacePipeline, files: list, batch_size: int | None = None,
                progress: bool = False) -> EmbeddedFaces:
    """Find and embed the faces of every file, a batch at a time; unreadable files are skipped."""
    from tqdm import tqdm

    batch_size = batch_size or (256 if pipeline.cropped else 8)
    paths, vectors, boxes, skipped = [], [], [], []
    for i in tqdm(range(0, len(files), batch_size), unit="batch", desc="embedding", disable=not progress):
        batch, images = [], []
        for f in files[i:i + batch_size]:
            try:
                images.append(load_image(f))
                batch.append(f)
            except BadImage as err:
                skipped.append(str(err))
        found = pipeline.find_faces(images)
        vectors.append(pipeline.embed([face for fs in found for face in fs]))
        for f, fs in zip(batch, found):
            paths += [str(f)] * len(fs)
            boxes += [face.box for face in fs]
    dim = pipeline.config.embedding_size
    return EmbeddedFaces(paths, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32), boxes, skipped)
