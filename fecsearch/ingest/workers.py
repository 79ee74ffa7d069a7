"""The per-image work of indexing (read, decode; for photos also detect and align; embed) and the
engine that runs it: threads in this process (ThreadEngine), or Ray across machines
(ingest/ray_engine.RayEngine). An engine takes the files to index and yields chunks of embedded
images; the indexer writes each chunk in one transaction."""
from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fecsearch.faces.images import BadImage, decode_image, original_size, read_bytes


@dataclass
class Decoded:
    path: Path
    size: int
    mtime: float
    sha256: str | None = None
    image: object = None  # released once its faces are found and prepared (see find_faces_of)
    error: str | None = None
    faces: list | None = None  # FoundFace: found in the worker (find_faces_of)
    width: int | None = None
    height: int | None = None
    vectors: object = None  # (faces, d) float32, once embedded
    times: list | None = None  # videos: every sampled time (faces carry their own .time)
    warning: str | None = None  # indexed, but with something to tell (a video's damaged stretch)
    prepared: object = None  # the faces' network input (FacePipeline.prepare), made in the worker


@dataclass(frozen=True)
class IngestJob:
    """What every worker needs to build its own pipeline, wherever it runs (picklable)."""
    model_name: str
    checkpoint: str | None
    mirror: bool
    cropped: bool
    detector_config: object = None  # faces.detect.DetectorConfig
    runtime: str = "auto"
    device: str | None = None
    frame_rate: float | None = None  # videos: frames sampled a second; None: videos are refused
    identities: bool = False  # photos: describe who each face is while its photo is decoded
    precision: str = "fp32"  # or "int8": the model's int8 graph (models/quantize.py)

    def pipeline(self, threads: int | None = 1):
        from fecsearch.models.inference import load_inference
        from fecsearch.models.pipeline import FacePipeline

        network = load_inference(self.model_name, self.checkpoint, self.device, self.runtime,
                                 mirror_average=self.mirror, threads=threads, precision=self.precision)
        return FacePipeline(network, self.cropped, self.detector_config, device=network.device,
                            runtime=network.runtime, threads=threads)


def find_faces_of(pipeline, item: tuple[Path, int, float], frame_rate: float | None = None,
                  identities: bool = False) -> Decoded:
    """Read and decode one file, find its faces (photos: detected and aligned; crops: the image
    itself) and prepare them for the network; with identities=True also crop photos' faces for the
    identity descriptor; for videos (frame_rate given) the faces of frames sampled at that rate,
    described as they are found."""
    from fecsearch.faces.video import is_video

    if is_video(item[0]):
        return find_faces_in_video(pipeline, item, frame_rate)
    decoded = decode_file(item)
    if decoded.error is None:
        decoded.faces = pipeline.find_faces([decoded.image])[0]  # crops: the image is the face
        # prepared here, on every core, rather than by the one thread that embeds
        decoded.prepared = pipeline.prepare(decoded.faces)
        if identities and not pipeline.cropped:  # cropped now, described with the chunk: no second decode
            from fecsearch.faces.images import original_scale
            from fecsearch.models.identity import identity_crop

            scale = original_scale(decoded.image)
            for face in decoded.faces:
                face.identity_crop = identity_crop(decoded.image, face.landmarks, scale)
        # Only the aligned crops go on: a decoded 48-megapixel photo is 144 MB, and up to two
        # chunks of them would otherwise wait in the queue for the writer.
        decoded.image = None
    return decoded


# Sampled frames a video's faces are described in at once (one ONNX run for many faces).
VIDEO_BATCH = 32


def find_faces_in_video(pipeline, item: tuple[Path, int, float], frame_rate: float | None) -> Decoded:
    """The faces of a video's sampled frames, each with its time and identity descriptor (a face is
    followed from frame to frame only while it stays the same person). Frames are detected on
    every core: one video is one item of the engine, and would otherwise keep one core busy."""
    import os

    from fecsearch.faces.images import file_sha256
    from fecsearch.faces.video import Sampling, sample_frames
    from fecsearch.models.identity import identity_crop

    path, size, mtime = item
    if frame_rate is None or pipeline.cropped:
        why = "with --cropped" if pipeline.cropped else "by this engine"
        return Decoded(path, size, mtime, error=f"{path}: videos are not indexed {why}; index its folder with "
                                                f"`fecsearch index` (thread engine, photos)")
    sampling = Sampling()
    faces, times, size_seen, waiting = [], [], [None, None], []

    def detect(sample):
        t, frame = sample
        size_seen[:] = frame.size
        found = pipeline.find_faces([frame])[0]
        for face in found:
            face.time, face.identity_crop = t, identity_crop(frame, face.landmarks)
        return t, found

    try:
        sha256 = file_sha256(path)
        with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            described = []  # batches described in the pool, while frames keep coming
            for t, found in decode_ahead(pool, sample_frames(path, frame_rate, sampling), 4, detect):
                times.append(t)
                faces += found
                waiting += found
                if len(waiting) >= VIDEO_BATCH:
                    described.append(pool.submit(describe_faces, pipeline, waiting))
                    waiting = []
            described.append(pool.submit(describe_faces, pipeline, waiting))
            for batch in described:
                batch.result()
        width, height = size_seen
    except BadImage as err:
        return Decoded(path, size, mtime, error=str(err))
    except OSError as err:
        return Decoded(path, size, mtime, error=f"{path}: cannot be read ({err.strerror or err})")
    warning = (f"{path}: {sampling.damaged} damaged packets skipped; {sampling.frames} frames sampled"
               if sampling.damaged else None)
    return Decoded(path, size, mtime, sha256, faces=faces, width=width, height=height, times=times, warning=warning)


def describe_faces(pipeline, faces: list) -> None:
    """Give faces cropped for it (FoundFace.identity_crop) their identity descriptor, in one batch."""
    if not faces:
        return
    for face, identity in zip(faces, pipeline.identity_network().describe([f.identity_crop for f in faces])):
        face.identity, face.identity_crop = identity, None


def embed_chunk(pipeline, items: list[Decoded]) -> list[Decoded]:
    """Embed the faces find_faces_of found in a chunk of images, in batches."""
    good = [d for d in items if d.error is None]
    faces = [f for d in good for f in d.faces]
    prepared = None
    if faces and all(d.prepared is not None for d in good):
        prepared = np.concatenate([d.prepared for d in good])
        for d in good:
            d.prepared = None
    vectors = pipeline.embed(faces, prepared)
    describe_faces(pipeline, [f for d in good for f in d.faces if f.identity_crop is not None])
    start = 0
    for d in good:
        d.vectors = vectors[start:start + len(d.faces)]
        start += len(d.faces)
        if d.times is not None:  # a video: one face for each run of the same face and expression
            from fecsearch.ingest.video import keep_one_per_run

            keep = keep_one_per_run(d.faces, d.vectors, d.times)
            d.faces, d.vectors = [d.faces[i] for i in keep], d.vectors[keep]
    return items


def decode_file(item: tuple[Path, int, float]) -> Decoded:
    path, size, mtime = item
    try:
        data = read_bytes(path)
        image = decode_image(data, path)
        width, height = original_size(image)
        return Decoded(path, size, mtime, hashlib.sha256(data).hexdigest(), image, width=width, height=height)
    except BadImage as err:
        return Decoded(path, size, mtime, error=str(err))


@contextmanager
def torch_threads(n: int | None):
    """Run the block with torch's intra-op pool at n threads (None: leave it as it is). Nothing to do
    where torch is not in use (the ONNX runtime sets its threads per session)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_ahead(pool: ThreadPoolExecutor, items: list, ahead: int,
                 load: Callable[[tuple[Path, int, float]], Decoded] = decode_file) -> Iterator[Decoded]:
    """Run `load` in the pool, in order, at most `ahead` images in flight: memory stays bounded however
    large the folder (Executor.map would queue every file at once)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(load, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class ThreadEngine:
    """The default engine: a thread pool in this process decodes (and, for photos, detects and
    aligns) images in order, at most two chunks ahead; this thread embeds each chunk. Nothing to
    start. An engine is this one method: RayEngine replaces it and nothing else in the indexer."""

    name = "thread"

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, job: IngestJob, pipeline, items: list, chunk_size: int) -> Iterator[list[Decoded]]:
        """Chunks of embedded images, in the order of `items`. `pipeline`: the indexer's own."""
        # One chunk is embedded in the background while the caller writes the one before it.
        with ThreadPoolExecutor(self.workers) as pool, ThreadPoolExecutor(1, "embed") as embedder, \
                torch_threads(None if job.cropped else 1):
            chunk: list[Decoded] = []
            embedding = None
            for item in decode_ahead(pool, items, 2 * chunk_size,
                                     lambda item: find_faces_of(pipeline, item, job.frame_rate, job.identities)):
                chunk.append(item)
                if len(chunk) == chunk_size:
                    previous, embedding = embedding, embedder.submit(embed_chunk, pipeline, chunk)
                    chunk = []
                    if previous is not None:
                        yield previous.result()
            if embedding is not None:
                yield embedding.result()
            if chunk:
                yield embed_chunk(pipeline, chunk)
