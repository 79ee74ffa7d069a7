"""`fecsearch index --engine ray`: indexing on a Ray cluster (Ray Data), or on a local Ray.

Two stages, as a cluster has them: CPU actors read, decode, detect and align (one image at a time,
one core each), and embedding actors (one per GPU with `num_gpus=1` when the cluster has GPUs,
one on the CPU otherwise) embed the aligned crops in batches. The indexer in this process writes
what comes back, a chunk per transaction, as with the thread engine, or each chunk becomes a
Parquet shard (ingest/shards.py). Actors build their pipeline once from the job (IngestJob), so
nothing unpicklable crosses the cluster; a dead actor is restarted and its batch run again, and
since a chunk is written per image path, an image done twice is still one image in the index.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from fecsearch.faces.align import FoundFace
from fecsearch.ingest.workers import Decoded, IngestJob, find_faces_of

# Images per batch through the detection actors, and crops per batch through the embedding ones.
DETECT_BATCH = 4


EMBED_BATCH = 64


class FindFaces:
    """Ray Data actor: files -> their faces' boxes, landmarks and prepared crops."""

    def __init__(self, job: IngestJob):
        self.pipeline = job.pipeline(threads=1)

    def __call__(self, batch: dict) -> dict:
        out = {k: [] for k in ("path", "size", "mtime", "sha256", "width", "height", "error", "faces", "crops")}
        for path, size, mtime in zip(batch["path"], batch["size"], batch["mtime"]):
            decoded = find_faces_of(self.pipeline, (Path(path), int(size), float(mtime)))
            faces = decoded.faces if decoded.error is None else []
            crops = decoded.prepared if faces else None  # FacePipeline.prepare's, made by find_faces_of
            out["path"].append(str(path))
            out["size"].append(int(size))
            out["mtime"].append(float(mtime))
            out["sha256"].append(decoded.sha256 or "")
            out["width"].append(decoded.width if decoded.width is not None else -1)
            out["height"].append(decoded.height if decoded.height is not None else -1)
            out["error"].append(decoded.error or "")
            out["faces"].append(json.dumps([[list(f.box), f.probability,
                                             f.landmarks.tolist() if f.landmarks is not None else None]
                                            for f in faces]))
            out["crops"].append(crops.tobytes() if crops is not None else b"")
        return {k: np.array(v, dtype=object) for k, v in out.items()}


class EmbedFaces:
    """Ray Data actor: prepared crops -> vectors, a batch of images' faces at a time."""

    def __init__(self, job: IngestJob, threads: int | None):
        from fecsearch.models.inference import load_inference

        self.network = load_inference(job.model_name, job.checkpoint, job.device, job.runtime,
                                      mirror_average=job.mirror, threads=threads, precision=job.precision)
        preprocess = self.network.config.preprocess
        self.shape = (preprocess.channels, preprocess.size, preprocess.size)

    def __call__(self, batch: dict) -> dict:
        crops = [np.frombuffer(c, np.float32).reshape(-1, *self.shape) for c in batch["crops"]]
        counts = [len(c) for c in crops]
        vectors = self.network.embed(np.concatenate(crops)) if sum(counts) else np.zeros((0, 1), np.float32)
        bounds = np.cumsum([0] + counts)
        out = {k: v for k, v in batch.items() if k != "crops"}
        out["vectors"] = np.array([vectors[a:b].astype(np.float32).tobytes() for a, b in zip(bounds, bounds[1:])],
                                  dtype=object)
        return out


def to_decoded(row: dict, dim: int) -> Decoded:
    """A row back from the cluster as the indexer's Decoded (faces without their crops)."""
    error = row["error"] or None
    decoded = Decoded(Path(row["path"]), int(row["size"]), float(row["mtime"]), row["sha256"] or None, error=error,
                      width=int(row["width"]) if row["width"] >= 0 else None,
                      height=int(row["height"]) if row["height"] >= 0 else None)
    if error is None:
        decoded.faces = [FoundFace(tuple(box), prob, np.asarray(marks) if marks is not None else None, None)
                         for box, prob, marks in json.loads(row["faces"])]
        decoded.vectors = np.frombuffer(row["vectors"], np.float32).reshape(len(decoded.faces), dim)
    return decoded


class RayEngine:
    """Runs the indexer's per-image work on Ray: `address` None joins the Ray this process already
    started, else starts a local one; "auto" joins the cluster this machine belongs to."""

    name = "ray"

    def __init__(self, address: str | None = None, detect_actors: int | None = None):
        self.address = address
        self.detect_actors = detect_actors

    def start(self):
        import logging

        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        context = ray.data.DataContext.get_current()
        # Ray Data's default holds back part of the cluster for each stage; on a small machine that
        # leaves the detection actors waiting for CPUs no one uses. fecsearch's stages size themselves.
        context.op_resource_reservation_enabled = False
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        return ray

    def plan(self, ray) -> dict:
        """How many actors of each stage, from the cluster's resources."""
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        if gpus:
            embed = {"concurrency": gpus, "num_gpus": 1, "threads": None}
        else:
            embed = {"concurrency": 1, "num_cpus": 1, "threads": 1}
        detect = self.detect_actors or max(1, cpus - (0 if gpus else 1))
        return {"detect": detect, "embed": embed}

    def _dataset(self, job: IngestJob, items: list):
        """The two stages over `items`, not yet run: rows with each image's faces and vectors."""
        ray = self.start()
        plan = self.plan(ray)
        embed = dict(plan["embed"])
        threads = embed.pop("threads")
        # Detection actors run on CPUs; embedding actors on their GPU when the cluster has GPUs.
        detect_job = replace(job, device="cpu")
        embed_job = replace(job, device="cuda") if "num_gpus" in embed else job
        rows = [{"path": str(path), "size": int(size), "mtime": float(mtime)} for path, size, mtime in items]
        data = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // DETECT_BATCH, 200)))
        # Ray Data restarts an actor that dies and runs its batch again (tests/test_ray.py kills one).
        actors = ray.data.ActorPoolStrategy
        data = data.map_batches(FindFaces, fn_constructor_kwargs={"job": detect_job}, batch_size=DETECT_BATCH,
                                batch_format="numpy", compute=actors(size=plan["detect"]), num_cpus=1)
        size = embed.pop("concurrency")
        return data.map_batches(EmbedFaces, fn_constructor_kwargs={"job": embed_job, "threads": threads},
                                batch_size=EMBED_BATCH, batch_format="numpy", compute=actors(size=size), **embed)

    def run(self, job: IngestJob, pipeline, items: list, chunk_size: int) -> Iterator[list[Decoded]]:
        """Chunks of embedded images, in the order they finish (`pipeline` only gives the vector
        size: each actor builds its own from the job)."""
        if not items:
            return
        dim = pipeline.config.embedding_size
        chunk: list[Decoded] = []
        for batch in self._dataset(job, items).iter_batches(batch_size=chunk_size, batch_format="numpy"):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys)):
                chunk.append(to_decoded(dict(zip(keys, values)), dim))
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def run_to_shards(self, job: IngestJob, items: list, chunk_size: int, folder, model) -> Iterator[dict]:
        """The workers write each chunk as a Parquet shard (ingest/shards.py); one summary per shard."""
        if not items:
            return
        data = self._dataset(job, items).map_batches(
            _write_shard, fn_kwargs={"folder": str(folder), "model": model}, batch_size=chunk_size,
            batch_format="numpy", num_cpus=0.25)
        for batch in data.iter_batches(batch_size=1, batch_format="numpy"):
            yield {"shard": batch["shard"][0], "images": int(batch["images"][0]), "faces": int(batch["faces"][0]),
                   "skipped": json.loads(batch["skipped"][0])}


def _write_shard(batch: dict, folder: str, model) -> dict:
    """Ray Data task: one batch of embedded rows -> one shard, written where the task runs."""
    from fecsearch.ingest.shards import write_shard

    columns = {"path": [str(p) for p in batch["path"]], "size": [int(v) for v in batch["size"]],
               "mtime": [float(v) for v in batch["mtime"]], "sha256": [v or None for v in batch["sha256"]],
               "width": [int(v) if v >= 0 else None for v in batch["width"]],
               "height": [int(v) if v >= 0 else None for v in batch["height"]],
               "error": [v or None for v in batch["error"]], "faces": list(batch["faces"]),
               "vectors": list(batch["vectors"])}
    path = write_shard(folder, columns, model)
    faces = sum(len(json.loads(f)) for f, e in zip(batch["faces"], batch["error"]) if not e)
    skipped = [(p, e) for p, e in zip(columns["path"], columns["error"]) if e]
    return {"shard": np.array([path.name], dtype=object), "images": np.array([len(columns["path"]) - len(skipped)]),
            "faces": np.array([faces]), "skipped": np.array([json.dumps(skipped)], dtype=object)}
