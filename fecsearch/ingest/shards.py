"""Parquet shards: indexing that writes files instead of one SQLite database, merged later.

For collections larger than one machine's disk or one writer: `fecsearch index DIR --shards OUT`
writes each chunk of embedded images as one Parquet file (by the Ray engine's workers, or by this
process with the thread engine), and `fecsearch index --from-shards OUT --index IDX` merges them
into an index (SQLite, then FAISS).

- A shard is committed atomically: written as `shard-*.parquet.tmp`, then renamed. A crashed run
  leaves at most .tmp files, which are ignored and removed; a rerun skips every image already in
  a finished shard, so a crashed cluster job resumes.
- One row per image: its file record (path, size, mtime, sha256, width, height, error) and its
  faces (`faces`: JSON [[box, probability, landmarks], ...]; `vectors`: float32 bytes, faces x d).
- Each shard's metadata names the model, its weights' sha256, the mirror average and the vector
  size; merging refuses shards from another model than the index's.
- Merging is idempotent: an image already in the index with the same size and mtime is skipped,
  and each shard's new images are written in one transaction.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from fecsearch.ingest.workers import Decoded

SHARD_GLOB = "shard-*.parquet"


COLUMNS = ("path", "size", "mtime", "sha256", "width", "height", "error", "faces", "vectors")


@dataclass(frozen=True)
class ShardModel:
    """What every shard of a folder must agree on, stored in its Parquet metadata."""
    model: str
    weights_sha256: str
    mirror_average: bool
    dim: int
    distance: str
    checkpoint: str | None = None
    precision: str = "fp32"  # shards written before int8 graphs existed hold fp32 vectors

    def metadata(self) -> dict[bytes, bytes]:
        return {b"fecsearch": json.dumps(self.__dict__).encode()}

    @classmethod
    def of(cls, metadata: dict | None, path: Path) -> "ShardModel":
        if not metadata or b"fecsearch" not in metadata:
            raise ValueError(f"{path}: not a fecsearch shard (no fecsearch metadata)")
        return cls(**json.loads(metadata[b"fecsearch"]))


def rows_of(chunk: list[Decoded]) -> dict[str, list]:
    """A chunk of embedded images as shard columns."""
    out: dict[str, list] = {c: [] for c in COLUMNS}
    for d in chunk:
        faces = d.faces if d.error is None else []
        out["path"].append(str(d.path))
        out["size"].append(int(d.size))
        out["mtime"].append(float(d.mtime))
        out["sha256"].append(d.sha256)
        out["width"].append(d.width)
        out["height"].append(d.height)
        out["error"].append(d.error)
        out["faces"].append(json.dumps([[list(f.box), f.probability,
                                         f.landmarks.tolist() if f.landmarks is not None else None] for f in faces]))
        vectors = d.vectors if d.error is None and d.vectors is not None else np.zeros((0,), np.float32)
        out["vectors"].append(np.asarray(vectors, np.float32).tobytes())
    return out


def write_shard(folder: str | Path, columns: dict[str, list], model: ShardModel) -> Path:
    """One shard, named by the images it holds, written to .tmp and renamed: all or nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1("\n".join(sorted(columns["path"])).encode()).hexdigest()[:20]
    path = folder / f"shard-{name}.parquet"
    schema = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()),
                        ("sha256", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                        ("error", pa.string()), ("faces", pa.string()), ("vectors", pa.binary())],
                       metadata=model.metadata())
    table = pa.table({c: columns[c] for c in COLUMNS}, schema=schema)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def finished_shards(folder: str | Path) -> list[Path]:
    """The committed shards of a folder; what a crashed writer left half-written is removed."""
    folder = Path(folder)
    for tmp in folder.glob(SHARD_GLOB + ".tmp"):
        tmp.unlink(missing_ok=True)
    return sorted(folder.glob(SHARD_GLOB))


def done_images(folder: str | Path, model: ShardModel) -> set[tuple[str, int, float]]:
    """(path, size, mtime) of every image in a finished shard, which a rerun skips."""
    import pyarrow.parquet as pq

    done = set()
    for shard in finished_shards(folder):
        stored = ShardModel.of(pq.read_schema(shard).metadata, shard)
        if (stored.model, stored.weights_sha256) != (model.model, model.weights_sha256):
            raise ValueError(f"{shard} holds faces of model '{stored.model}' (weights {stored.weights_sha256[:12]}), "
                             f"not '{model.model}' (weights {model.weights_sha256[:12]}); use another --shards folder")
        if stored.precision != model.precision:
            raise ValueError(f"{shard} holds {stored.precision} vectors, not {model.precision}; use another --shards "
                             f"folder, or --precision {stored.precision}")
        table = pq.read_table(shard, columns=["path", "size", "mtime"])
        done.update(zip(table["path"].to_pylist(), table["size"].to_pylist(), table["mtime"].to_pylist()))
    return done


@dataclass
class ShardSummary:
    shards_written: int = 0
    shards_merged: int = 0
    images: int = 0
    images_skipped_done: int = 0
    faces: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "skipped"}
        d["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return d


def read_shard(path: Path) -> Iterator[tuple[dict, list]]:
    """(image record, [(face_index, box, probability, landmarks, vector)]) for each image of a shard."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    model = ShardModel.of(table.schema.metadata, path)
    for row in table.to_pylist():
        vectors = np.frombuffer(row["vectors"], np.float32)
        faces = json.loads(row["faces"])
        vectors = vectors.reshape(len(faces), model.dim) if faces else vectors.reshape(0, model.dim)
        image = {k: row[k] for k in ("path", "size", "mtime", "sha256", "width", "height")}
        image.update(status="ok" if row["error"] is None else "skipped", error=row["error"])
        yield image, [(i, tuple(box), prob, marks, vector) for i, ((box, prob, marks), vector)
                      in enumerate(zip(faces, vectors))]


def merge_shards(store, folder: str | Path, report=print) -> ShardSummary:
    """Every finished shard of `folder` into the index `store` (a FaceStore opened for writing)."""
    import pyarrow.parquet as pq

    from fecsearch.store.database import FaceRecord

    started, summary = time.time(), ShardSummary()
    shards = finished_shards(folder)
    if not shards:
        raise FileNotFoundError(f"{folder}: no finished shards (shard-*.parquet) to merge")
    models = {ShardModel.of(pq.read_schema(s).metadata, s) for s in shards}
    if len({(m.model, m.weights_sha256, m.mirror_average, m.precision) for m in models}) > 1:
        raise ValueError(f"{folder} holds shards of several models or settings: "
                         f"{', '.join(sorted({m.model for m in models}))}; merge each into its own index")
    model = next(iter(models))
    store.bind_model(model.model, model.dim, model.distance, model.weights_sha256, model.mirror_average,
                     model.precision)
    if store.meta("mirror_average", "0") != str(int(model.mirror_average)):
        raise ValueError(f"{store.dir} was built {'with' if not model.mirror_average else 'without'} the mirror "
                         f"average and the shards of {folder} were not; use another --index")
    if store.embedding_precision != model.precision:
        raise ValueError(f"{store.dir} holds {store.embedding_precision} vectors and the shards of {folder} "
                         f"{model.precision} ones; use another --index")
    if model.checkpoint:
        store.set_meta("checkpoint", model.checkpoint)
    run_id = store.start_run("merge-shards", str(folder), model.model)
    status = "interrupted"
    try:
        known = store.known_images()
        for shard in shards:
            images, records = [], []
            for image, faces in read_shard(shard):
                old = known.get(image["path"])
                if old and old["size"] == image["size"] and old["mtime"] == image["mtime"]:
                    summary.images_skipped_done += 1
                    continue
                if image["error"] is not None:
                    summary.skipped.append((image["path"], image["error"]))
                images.append(image)
                records.append([FaceRecord(0, i, box, prob, marks, vector) for i, box, prob, marks, vector in faces])
            if images:
                store.write_batch(images, records, model.model, run_id)
            summary.shards_merged += 1
            summary.images += sum(1 for image in images if image["error"] is None)
            summary.faces += sum(len(r) for r in records)
        status = "done"
    finally:
        store.finish_run(run_id, status, images_added=summary.images, faces_added=summary.faces,
                         skipped=len(summary.skipped))
    summary.seconds = time.time() - started
    return summary


def shard_model(job) -> ShardModel:
    """The ShardModel of an ingest job (workers.IngestJob)."""
    from fecsearch.models.config import trained_config, weights_checksum

    config, _ = trained_config(job.model_name, job.checkpoint)
    return ShardModel(job.model_name, weights_checksum(job.model_name, job.checkpoint), job.mirror,
                      config.embedding_size, config.distance,
                      os.path.abspath(job.checkpoint) if job.checkpoint else None, job.precision)


def index_to_shards(root: str | Path, folder: str | Path, job, engine, chunk_size: int, report=print,
                    progress: bool = False) -> ShardSummary:
    """Embed every image under `root` not yet in a finished shard of `folder`, a shard per chunk."""
    from tqdm import tqdm

    from fecsearch.faces.images import find_images

    started, summary = time.time(), ShardSummary()
    model = shard_model(job)
    done = done_images(folder, model)
    # absolute paths, as the index stores them; videos are refused, with a reason
    files, problems = find_images(Path(os.path.abspath(root)), videos=True)
    for path, reason in problems:
        summary.skipped.append((str(path), reason))
        report(f"skipped {path}: {reason}")
    todo = []
    for path in files:
        try:
            st = path.stat()
        except OSError as err:
            summary.skipped.append((str(path), err.strerror or str(err)))
            continue
        if (str(path), st.st_size, st.st_mtime) in done:
            summary.images_skipped_done += 1
        else:
            todo.append((path, st.st_size, st.st_mtime))
    bar = tqdm(total=len(todo), unit="img", desc="sharding", disable=not progress, dynamic_ncols=True)
    if hasattr(engine, "run_to_shards"):  # the workers write the shards themselves
        written = engine.run_to_shards(job, todo, chunk_size, folder, model)
    else:
        pipeline = job.pipeline(threads=1)
        written = (_written(write_shard(folder, rows_of(chunk), model), chunk)
                   for chunk in engine.run(job, pipeline, todo, chunk_size))
    for shard in written:
        summary.shards_written += 1
        summary.images += shard["images"]
        summary.faces += shard["faces"]
        for path, reason in shard["skipped"]:
            summary.skipped.append((path, reason))
            report(f"skipped {reason}")
        bar.update(shard["images"] + len(shard["skipped"]))
    bar.close()
    summary.seconds = time.time() - started
    return summary


def _written(path: Path, chunk: list[Decoded]) -> dict:
    good = [d for d in chunk if d.error is None]
    return {"shard": path.name, "images": len(good), "faces": sum(len(d.faces) for d in good),
            "skipped": [(str(d.path), d.error) for d in chunk if d.error is not None]}
