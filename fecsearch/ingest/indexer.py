"""`fecsearch index`: embed every face of a folder into an index, incrementally and resumably.

Work is committed to SQLite a chunk of images at a time, each chunk in one transaction, so a run
killed at any moment loses at most the chunk in flight; the next run sees those files as new.
"""
from __future__ import annotations

import os
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from fecsearch.faces.detect import DetectorConfig
from fecsearch.faces.images import file_sha256, find_images
from fecsearch.faces.video import DEFAULT_FRAME_RATE
from fecsearch.ingest.workers import Decoded, IngestJob, ThreadEngine
from fecsearch.models.config import DEFAULT_MODEL, weights_checksum
from fecsearch.models.inference import indexing_placement, load_inference
from fecsearch.models.pipeline import FacePipeline
from fecsearch.store.database import FaceRecord, FaceStore
from fecsearch.vectors.faiss_index import VectorIndex

Report = Callable[[str], None]


@dataclass
class IndexSummary:
    root: str
    images_found: int = 0
    images_indexed: int = 0
    images_unchanged: int = 0
    images_removed: int = 0
    faces_added: int = 0
    faces_total: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    index_type: str = ""
    index_update: str = ""  # how FAISS followed: loaded (nothing changed), updated, or rebuilt

    @property
    def faces_per_second(self) -> float:
        return self.faces_added / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "skipped"}
        d["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        d["faces_per_second"] = round(self.faces_per_second, 1)
        return d


class Indexer:
    def __init__(self, store: FaceStore, network, model_name: str, weights_sha256: str,
                 cropped: bool = False, detector_config: DetectorConfig | None = None, workers: int | None = None,
                 chunk_size: int | None = None, progress: bool = True, report: Report = print,
                 rebuild_index: bool = False, engine=None, checkpoint: str | None = None,
                 frame_rate: float = DEFAULT_FRAME_RATE, identities: bool = False,
                 detect_on: tuple[str | None, str] | None = None):
        """network: the model ready to embed (models.inference.load_inference), on its device;
        detect_on: (device, runtime) for MTCNN and the identity network, if not the network's;
        frame_rate: frames a second sampled from videos (the thread engine's; others refuse videos);
        identities: describe each photo's faces while it is decoded (the thread engine's; faces
        left without, and older ones, are described after by people/describe.py)."""
        self.store, self.network, self.model_name = store, network, model_name
        self.rebuild_index = rebuild_index
        self.cropped, self.progress, self.report = cropped, progress, report
        # Photos: each worker decodes, detects and aligns whole images, one per core, each with one
        # torch thread (MTCNN's small convolutions gain little from a second thread; a second image
        # on the other core gains almost 2x). Crops: workers only decode, the main thread embeds.
        self.workers = workers or (4 if cropped else max(1, os.cpu_count() or 1))
        self.engine = engine or ThreadEngine(self.workers)
        # An existing index's faces were embedded with or without the mirror average: new ones follow.
        mirror = store.bind_model(model_name, network.config.embedding_size, network.config.distance, weights_sha256,
                                  network.config.mirror_average, network.precision)
        network.config = replace(network.config, mirror_average=mirror)
        # MTCNN in ONNX Runtime: one thread per network, as the workers detect one image per core.
        detect_device, detect_runtime = detect_on or (network.device, network.runtime)
        self.pipeline = FacePipeline(network, cropped=cropped, detector_config=detector_config, device=detect_device,
                                     runtime=detect_runtime, threads=1)
        # What an engine's workers elsewhere need to build the same pipeline. With detection kept off
        # the network's GPU, the runtime asked for goes with it: a Ray engine's detection actors
        # (on CPUs) then detect in ONNX Runtime, and its embedding actors still find torch's CUDA.
        self.job = IngestJob(model_name, checkpoint, mirror, cropped, detector_config,
                             detect_runtime if detect_on else network.runtime, network.device, frame_rate, identities,
                             network.precision)
        # Cropped faces are tiny and quick: big chunks. Photos need detection: small chunks keep
        # the work lost to an interruption small.
        self.chunk_size = chunk_size or (512 if cropped else 16)

    @classmethod
    def for_folder(cls, store: FaceStore, model_name: str | None = None, checkpoint: str | None = None,
                   mirror: bool | None = None, device: str | None = None, runtime: str = "auto",
                   precision: str = "auto",
                   **options) -> "Indexer":
        """An indexer with the index's model: the one asked for, else the one the index was built with,
        else the default. A checkpoint is remembered so that later runs and queries use the same weights.
        runtime: "onnx", "torch" or "auto" (models.inference.load_inference); precision: a new index's
        ("auto", "fp32", "int8"; an existing index keeps its own); mirror None: the model's own choice."""
        model_name = model_name or store.meta("model") or DEFAULT_MODEL
        checkpoint = checkpoint or store.meta("checkpoint") or None
        checksum = weights_checksum(model_name, checkpoint)  # hashed once: the graph's check reuses it
        if store.model_bound:
            store.check_model(model_name, checksum)
            precision = store.embedding_precision  # new faces must be comparable with the stored ones
        chosen, detect_on = indexing_placement(device, runtime, precision)
        network = load_inference(model_name, checkpoint, chosen, runtime, mirror_average=mirror,
                                 weights_sha256=checksum, precision=precision)
        if detect_on and "detect_on" not in options:
            options["detect_on"] = detect_on
        indexer = cls(store, network, model_name, checksum, checkpoint=checkpoint, **options)
        if checkpoint:
            store.set_meta("checkpoint", os.path.abspath(checkpoint))
        return indexer

    def plan(self, root: Path, summary: IndexSummary, run_id: int) -> list[tuple[Path, int, float]]:
        """Which files need embedding; drops from the store the ones that are gone, and records the
        entries that cannot be read at all (link loops, dangling links, FIFOs) as skipped."""
        files, problems = find_images(root, videos=True)
        summary.images_found = len(files)
        unreadable = []
        for path, reason in problems:
            summary.skipped.append((str(path), reason))
            self.report(f"skipped {path}: {reason}")
            unreadable.append({"path": str(path), "size": None, "mtime": None, "sha256": None, "width": None,
                               "height": None, "status": "skipped", "error": f"{path}: {reason}"})
        damaged = self.store.malformed_faces()
        if damaged:  # their files are still there: embedding them again repairs the index
            self.store.remove_images(damaged)
            self.report(f"{len(damaged)} image(s) had faces with damaged embeddings in the database; "
                        f"embedding them again")
        known = self.store.known_images(prefix=str(root) if root.is_dir() else None)
        unreadable = [u for u in unreadable if known.get(u["path"], {}).get("status") != "skipped"]
        if unreadable:
            self.store.write_batch(unreadable, [[] for _ in unreadable], self.model_name, run_id)
        todo, seen = [], set()
        for path in files:
            key = str(path)
            seen.add(key)
            try:
                st = path.stat()
            except OSError as err:
                summary.skipped.append((key, err.strerror or str(err)))
                self.report(f"skipped {path}: {err.strerror or err}")
                continue
            row = known.get(key)
            if row and row["size"] == st.st_size and row["mtime"] == st.st_mtime:
                summary.images_unchanged += 1
                continue
            if row and row["status"] == "ok" and row["size"] == st.st_size:
                try:  # touched but not changed: no need to embed again
                    if file_sha256(path) == row["sha256"]:
                        self.store.touch_image(row["id"], st.st_mtime)
                        summary.images_unchanged += 1
                        continue
                except OSError:
                    pass
            todo.append((path, st.st_size, st.st_mtime))
        seen.update(str(path) for path, _ in problems)
        gone = [row["id"] for key, row in known.items() if key not in seen]
        if root.is_dir() and gone:
            self.store.remove_images(gone)
            summary.images_removed = len(gone)
        return todo

    def run(self, root: str | os.PathLike, command: str = "index") -> IndexSummary:
        root = Path(os.path.abspath(root))
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        started = time.time()
        summary = IndexSummary(str(root))
        run_id = self.store.start_run(command, str(root), self.model_name)
        status = "interrupted"
        try:
            todo = self.plan(root, summary, run_id)
            bar = tqdm(total=len(todo), unit="img", desc="indexing", disable=not self.progress, dynamic_ncols=True)
            # The engine's workers run ahead while this thread writes what they have embedded.
            with closing(self.engine.run(self.job, self.pipeline, todo, self.chunk_size)) as chunks:
                for chunk in chunks:
                    self._write(chunk, summary, run_id)
                    bar.update(len(chunk))
                    bar.set_postfix(faces=summary.faces_added,
                                    faces_per_s=f"{summary.faces_added / max(time.time() - started, 1e-9):.0f}")
            bar.close()
            status = "done"
        finally:
            summary.seconds = time.time() - started
            self.store.finish_run(run_id, status, images_added=summary.images_indexed,
                                  images_removed=summary.images_removed, faces_added=summary.faces_added,
                                  skipped=len(summary.skipped))
        index = VectorIndex.open(self.store, force_rebuild=self.rebuild_index, gpu=False)
        summary.faces_total, summary.index_type, summary.index_update = len(index), index.kind, index.how
        summary.seconds = time.time() - started
        return summary

    def _write(self, items: list[Decoded], summary: IndexSummary, run_id: int) -> None:
        """One chunk of embedded images (and the files that could not be read) in one transaction."""
        good = [d for d in items if d.error is None]
        images, records = [], []
        for d in good:
            if d.warning:
                self.report(d.warning)
            images.append({"path": str(d.path), "size": d.size, "mtime": d.mtime, "sha256": d.sha256,
                           "width": d.width, "height": d.height, "status": "ok", "error": None})
            records.append([FaceRecord(0, i, f.box, f.probability,
                                       f.landmarks.tolist() if f.landmarks is not None else None, v, f.time, f.run,
                                       f.identity)
                            for i, (f, v) in enumerate(zip(d.faces, d.vectors))])
        for d in items:
            if d.error is not None:
                summary.skipped.append((str(d.path), d.error))
                self.report(f"skipped {d.error}")
                images.append({"path": str(d.path), "size": d.size, "mtime": d.mtime, "sha256": None,
                               "width": None, "height": None, "status": "skipped", "error": d.error})
                records.append([])
        identities = self.pipeline.identity  # made when a video was indexed
        self.store.write_batch(images, records, self.model_name, run_id,
                               identities.checksum if identities is not None else None)
        summary.images_indexed += len(good)
        summary.faces_added += sum(len(d.faces) for d in good)
