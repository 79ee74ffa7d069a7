"""`fecsearch index`, `embed`, `info` and `models`: building an index and looking at it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from fecsearch.cli.common import (DEFAULT_INDEX, IndexProblem, detector_options, device_option, echo_json, fail,
                                  load_network, make_detector_config)
from fecsearch.models.config import DEFAULT_MODEL


@click.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json):
    """The registered models: trunk, input, output, whether their weights (and an int8 graph, which new
    indexes use on a CPU: `index --precision`) are here, and what was measured of them
    (benchmarks/bench_models.py: faces/s of `index --cropped` here, FER+ valid vote-triplet accuracy, K-NN mean AUC,
    CK+48 precision@5).

    \b
    Example:
      fecsearch models --json
    """
    from fecsearch.models.config import WEIGHTS_DIR, get_config, list_models, weights_path
    from fecsearch.models.inference import graph_path

    measured_path = WEIGHTS_DIR / "measured.json"
    measured = json.loads(measured_path.read_text()) if measured_path.exists() else {}
    rows = []
    for name in list_models():
        c = get_config(name)
        path = weights_path(c)
        p = c.preprocess
        rows.append({"name": name, "default": name == DEFAULT_MODEL, "family": c.family, "trunk": c.trunks,
                     "members": c.members,
                     "input": f"{p.size}x{p.size} {'RGB' if p.channels == 3 and p.colour else 'grey'}",
                     "dim": c.embedding_size, "distance": c.distance,
                     "weights": "shipped" if path and path.exists() else "needs training or download",
                     "int8": bool(path and graph_path(path, "int8").exists()), "measured": measured.get(name, {})})
    if as_json:
        echo_json(rows)
        return
    wide, trunk_wide = max(len(r["name"]) for r in rows), max(len(r["trunk"]) for r in rows)
    click.echo(f"{'model':{wide}} {'trunk':{trunk_wide}} {'input':14} {'dim':>4}  {'faces/s':>7} {'triplets':>8} "
               f"{'K-NN AUC':>8} {'CK+ P@5':>7}  weights")
    for r in rows:
        m = r["measured"]

        def pct(key):
            return f"{m[key] * 100:.1f}" if key in m else "-"

        faces = f"{m['faces_per_second']:.0f}" if "faces_per_second" in m else "-"
        click.echo(f"{r['name']:{wide}} {r['trunk']:{trunk_wide}} {r['input']:14} {r['dim']:4}  {faces:>7} "
                   f"{pct('triplet_accuracy'):>8} {pct('knn_mean_auc'):>8} {pct('ckplus_precision_at_5'):>7}  "
                   f"{r['weights']}"
                   f"{' + int8 graph' if r['int8'] else ''}{'  (default)' if r['default'] else ''}")
    if measured.get("_run"):
        click.echo(f"measured {measured['_run']['date']} on this project's 2-core CPU: {measured['_run']['command']}"
                   f"\nfaces/s: FER+ crops as a new `index --cropped` embeds them (its runtime and precision, and "
                   f"torch's faces/s, in --json)")


@click.command()
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path),
              help="Index folder (SQLite database + FAISS file).")
@click.option("--shards", "shards_dir", type=click.Path(path_type=Path),
              help="Write Parquet shards into this folder instead of an index (merge them with --from-shards); "
                   "a rerun skips the images already in finished shards.")
@click.option("--from-shards", "from_shards", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Merge the Parquet shards of this folder into --index (no FOLDER).")
@click.option("--model", "model_name", default=None,
              help=f"Embedding model (default: the index's, else {DEFAULT_MODEL}).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Trained weights for --model.")
@click.option("--cropped", is_flag=True,
              help="Each image already is one face crop (FER, CelebA aligned): no detection.")
@click.option("--workers", type=int, default=None,
              help="Threads reading images (and, for photos, finding their faces). Default: one per core for "
                   "photos, 4 with --cropped.")
@click.option("--chunk-size", type=int, help="Images committed per transaction (default 512 cropped, 16 photos).")
@click.option("--mirror/--no-mirror", default=None,
              help="A new index: embed each face with its mirror image and average them (more accurate for one or "
                   "two networks, twice the work). Default: the model's own choice (every model mirrors but the "
                   "three-network one, which gains nothing from it). An existing index keeps what it was built with.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True,
              help="A new index: int8 runs the model's int8 graph (1.5x the faces/s on a CPU, the same accuracy "
                   "measured; the lite FECNets have one), fp32 the float one; auto takes int8 where the model has "
                   "it. An existing index keeps what it was built with, and queries follow it.")
@click.option("--rebuild-index", is_flag=True,
              help="Build the FAISS index again from the database (retraining IVF lists) instead of adding "
                   "and removing what changed.")
@click.option("--index-type", type=click.Choice(["auto", "flat", "hnsw", "ivf", "ivf-sq8", "ivf-pq", "ivf-sq8-disk"]),
              default=None,
              help="The FAISS index kind, kept by the index from then on. auto (a new index's default): exact up "
                   "to 1M faces, IVF lists to 20M, 8-bit IVF lists to 50M, then 8-bit lists on disk, mapped "
                   "for search (ivf-sq8-disk: for collections whose vectors outgrow memory).")
@click.option("--engine", type=click.Choice(["thread", "ray"]), default="thread", show_default=True,
              help="thread: a thread pool in this process, nothing to start; ray: Ray actors detect and embed "
                   "(a local Ray, or the cluster at --address); needs `pip install 'fecsearch[ray]'`.")
@click.option("--address", "ray_address", default=None,
              help="With --engine ray: the Ray cluster to join ('auto': the one this machine is in).")
@click.option("--frame-rate", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Videos (mp4, mov, mkv, webm, avi): frames a second to look for faces in.")
@click.option("--identities/--no-identities", default=None,
              help="Also describe who each face is (for `fecsearch people`, `query --person`, `--other-people`). "
                   "Default: on for photos, off with --cropped.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@detector_options
@device_option
def index(folder, index_dir, shards_dir, from_shards, model_name, checkpoint, cropped, workers, chunk_size, mirror,
          precision, rebuild_index, index_type, engine, ray_address, frame_rate, identities, as_json, quiet, min_face,
          min_prob, thresholds, canvas, device, runtime):
    """Embed every face of FOLDER (recursively) into an index: photos, and videos, whose faces are
    indexed with their time (one face kept for each run of frames showing the same face with the
    same expression).

    Runs again over the same folder embed only new or changed files and drop deleted ones; an
    interrupted run resumes where it stopped.

    \b
    Examples:
      fecsearch index ~/Pictures/party
      fecsearch index ../shared/data/ferplus/valid --cropped --index indexes/fer-valid
      fecsearch index ./crops --cropped --precision fp32 --index indexes/crops-fp32
      fecsearch index /mnt/photos --engine ray --address auto
      fecsearch index /mnt/photos --engine ray --address auto --shards /mnt/shards
      fecsearch index --from-shards /mnt/shards --index indexes/all --index-type ivf-sq8-disk
    """
    from fecsearch.store.database import DB_NAME
    from fecsearch.store.lock import WriterLock

    if (folder is None) == (from_shards is None):
        raise click.UsageError("give a FOLDER to index, or --from-shards DIR to merge")
    if folder is not None and not folder.exists():
        fail(f"{folder}: no such file or folder")
    if shards_dir is not None:
        return write_shards(folder, shards_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, as_json,
                            quiet, make_detector_config(min_face, min_prob, thresholds, canvas), device, runtime,
                            make_engine(engine, ray_address, workers), precision)
    if index_dir.exists() and not index_dir.is_dir():
        fail(f"{index_dir}: --index must be a folder, and this is a file")
    index_dir.mkdir(parents=True, exist_ok=True)
    # One writer per index: a second run waits here, after saying so, until the first is done.
    with WriterLock(index_dir / (DB_NAME + ".lock"), lambda m: click.echo(m, err=True)):
        if from_shards is not None:
            return merge(from_shards, index_dir, as_json, index_type)
        run_index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, rebuild_index,
                  as_json, quiet, make_detector_config(min_face, min_prob, thresholds, canvas), device, runtime,
                  make_engine(engine, ray_address, workers), not cropped if identities is None else identities,
                  frame_rate, index_type, precision)


def write_shards(folder, shards_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, as_json, quiet,
                 detector_config, device, runtime, engine, precision="auto"):
    from fecsearch.ingest.shards import index_to_shards
    from fecsearch.ingest.workers import IngestJob, ThreadEngine
    from fecsearch.models.config import trained_config
    from fecsearch.models.inference import choose_precision
    from fecsearch.runtime.onnx import RuntimeUnavailable

    model_name = model_name or DEFAULT_MODEL
    config, weights = trained_config(model_name, checkpoint)
    precision = choose_precision(precision, weights, runtime, device)
    mirror = config.mirror_average if mirror is None else mirror
    job = IngestJob(model_name, checkpoint, mirror, cropped, detector_config, runtime, device, precision=precision)
    engine = engine or ThreadEngine(workers or (4 if cropped else max(1, os.cpu_count() or 1)))
    try:
        summary = index_to_shards(folder, shards_dir, job, engine, chunk_size or (512 if cropped else 16),
                                  report=lambda m: click.echo(m, err=True), progress=not quiet and not as_json)
    except (ValueError, KeyError, RuntimeUnavailable) as err:
        fail(str(err).strip("'\""))
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(f"{summary.images} images and {summary.faces} faces written in {summary.shards_written} shards to "
               f"{shards_dir}; {summary.images_skipped_done} already in earlier shards, {len(summary.skipped)} "
               f"skipped; {summary.seconds:.1f}s")


def merge(from_shards, index_dir, as_json, index_type=None):
    from fecsearch.ingest.shards import merge_shards
    from fecsearch.store.database import FaceStore, ModelMismatch
    from fecsearch.vectors.faiss_index import VectorIndex

    store = FaceStore(index_dir)
    if index_type:
        store.set_meta("index_type", index_type)
    try:
        summary = merge_shards(store, from_shards, report=lambda m: click.echo(m, err=True))
        vectors = VectorIndex.open(store, gpu=False)
    except (ValueError, FileNotFoundError, ModelMismatch) as err:
        fail(str(err).strip("'\""))
    finally:
        store.close()
    if as_json:
        echo_json({**summary.to_dict(), "faces_total": len(vectors), "index_type": vectors.kind,
                   "index_update": vectors.how})
        return
    click.echo(f"{summary.shards_merged} shards merged into {index_dir}: {summary.images} images and {summary.faces} "
               f"faces added, {summary.images_skipped_done} already there, {len(summary.skipped)} skipped; "
               f"{len(vectors)} faces in the index ({vectors.kind}, {vectors.how}); {summary.seconds:.1f}s")


def make_engine(name: str, address: str | None, workers: int | None):
    if name == "thread":
        return None  # the indexer's default
    from fecsearch.runtime.onnx import module_installed

    if not module_installed("ray"):
        fail("--engine ray needs Ray, which is not installed here: pip install 'fecsearch[ray]'")
    from fecsearch.ingest.ray_engine import RayEngine

    return RayEngine(address, detect_actors=workers)


def run_index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, rebuild_index, as_json,
              quiet, detector_config, device, runtime="auto", engine=None, identities=False, frame_rate=2.0,
              index_type=None, precision="auto"):
    from fecsearch.ingest.indexer import Indexer
    from fecsearch.models.config import MissingWeights
    from fecsearch.runtime.onnx import RuntimeUnavailable
    from fecsearch.store.database import FaceStore, ModelMismatch

    store = FaceStore(index_dir)
    if index_type:  # the FAISS index follows it from now on (vectors/faiss_index.VectorIndex.open)
        store.set_meta("index_type", index_type)
    try:
        try:
            indexer = Indexer.for_folder(store, model_name, checkpoint, mirror, cropped=cropped,
                                         detector_config=detector_config, workers=workers, chunk_size=chunk_size,
                                         device=device, runtime=runtime, progress=not quiet and not as_json,
                                         report=lambda m: click.echo(m, err=True), rebuild_index=rebuild_index,
                                         engine=engine, frame_rate=frame_rate, identities=identities,
                                         precision=precision)
        except (MissingWeights, ModelMismatch, KeyError, RuntimeUnavailable) as err:
            fail(str(err).strip("'\""))
        summary = indexer.run(folder)
        described = describe_identities(store, device, runtime, quiet or as_json) if identities else None
    finally:
        # closed now, not whenever the garbage collector gets to it: a connection closed late
        # checkpoints its WAL then, into whatever the file has become
        store.close()
    if as_json:
        echo_json({**summary.to_dict(), **({"identities": described.to_dict()} if described else {})})
        return
    click.echo(
        f"{summary.images_found} images found: {summary.images_indexed} indexed, {summary.images_unchanged} unchanged, "
        f"{summary.images_removed} removed, {len(summary.skipped)} skipped; {summary.faces_added} faces added "
        f"({summary.faces_per_second:.0f}/s), {summary.faces_total} in the index ({summary.index_type}, "
        f"{summary.index_update}); {summary.seconds:.1f}s")
    if summary.skipped:
        click.echo("skipped:")
        for path, reason in summary.skipped:
            click.echo(f"  {reason if reason.startswith(path) else f'{path}: {reason}'}")
    if described and described.described:
        click.echo(f"{described.described} faces given identity descriptors (`fecsearch people` finds the people)")


def describe_identities(store, device, runtime, quiet: bool):
    """Give every face of the index that lacks one an identity descriptor (people/describe.py)."""
    from fecsearch.models.identity import IdentityNetwork
    from fecsearch.people.describe import describe_missing
    from fecsearch.runtime.onnx import RuntimeUnavailable

    if not store.missing_identities():
        return None
    try:
        network = IdentityNetwork(device, runtime)
    except (RuntimeUnavailable, FileNotFoundError) as err:
        fail(str(err).strip("'\""))
    return describe_missing(store, network, progress=not quiet, report=lambda m: click.echo(m, err=True))


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The .npz file to write.")
@click.option("--model", "model_name", default=None, help=f"Embedding model (default: {DEFAULT_MODEL}).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--cropped", is_flag=True, help="Each image already is one face crop: no detection.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
              help="int8: the model's int8 graph, as indexes built with it embed (`fecsearch info` says an index's).")
@detector_options
@device_option
def embed(paths, out, model_name, checkpoint, cropped, precision, min_face, min_prob, thresholds, canvas, device,
          runtime):
    """Embeddings of every face in PATHS (files or folders), without an index.

    The .npz holds `paths` (each face's source image), `embeddings` (float32, [n, d]) and
    `boxes` (x1, y1, x2, y2).

    \b
    Example:
      fecsearch embed ../shared/data/ckplus48 --cropped --out ck.npz
    """
    import numpy as np

    from fecsearch.faces.images import find_images
    from fecsearch.models.inference import indexing_placement
    from fecsearch.models.pipeline import FacePipeline, embed_files

    chosen, detect_on = indexing_placement(device, runtime, precision)  # as index places them
    network = load_network(model_name or DEFAULT_MODEL, checkpoint, chosen, runtime, precision=precision)
    detect_device, detect_runtime = detect_on or (network.device, network.runtime)
    pipeline = FacePipeline(network, cropped, make_detector_config(min_face, min_prob, thresholds, canvas),
                            device=detect_device, runtime=detect_runtime)
    files, skipped = [], []
    for p in paths:
        found, problems = find_images(p)
        files += found
        skipped += [f"{path}: {reason}" for path, reason in problems]
    faces = embed_files(pipeline, files, progress=True)
    skipped += faces.skipped
    for s in skipped:
        click.echo(f"skipped {s}", err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, paths=np.array(faces.paths), embeddings=faces.vectors.astype(np.float32),
             boxes=np.array(faces.boxes, np.float32).reshape(-1, 4), model=model_name or DEFAULT_MODEL,
             precision=precision)
    tmp.replace(out)
    click.echo(f"{len(faces.paths)} faces from {len(files) - len(faces.skipped)} images -> {out} "
               f"({len(skipped)} skipped)")


@click.command()
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.option("--skipped", "show_skipped", is_flag=True, help="List the files that were skipped and why.")
@click.option("--check", "check", is_flag=True,
              help="Also run SQLite's integrity check and validate every embedding; exit 2 if anything is damaged.")
def info(index_dir, as_json, show_skipped, check):
    """What an index holds: model, counts, index type, size on disk. Reads the index, never writes it.

    \b
    Examples:
      fecsearch info --index indexes/default --json
      fecsearch info --check
    """
    from fecsearch.store.database import DB_NAME, FaceStore
    from fecsearch.vectors.faiss_index import VectorIndex, index_report

    try:
        store = FaceStore(index_dir, readonly=True)
    except FileNotFoundError as err:
        fail(str(err))
    report = store.check() if check else None
    if report and not report["ok"]:
        if as_json:
            echo_json({"index": str(index_dir), "check": report})
        bad = report["invalid_faces"]
        raise IndexProblem(
            f"{index_dir}: damaged: integrity check says {'; '.join(report['integrity'][:3])}"
            + (f"; {len(bad)} face(s) have invalid embeddings (ids {', '.join(str(f['face_id']) for f in bad[:10])}); "
               f"`fecsearch index` on their folder embeds them again" if bad else ""))
    index = VectorIndex.open(store, gpu=False, save=False)
    db_bytes = sum(p.stat().st_size for p in Path(index_dir).glob(DB_NAME + "*"))
    data = {"index": str(index_dir), **index_report(store, index), "checkpoint": store.meta("checkpoint"),
            "faiss_rebuilt": index.rebuilt, "faiss": index.how, "database_bytes": db_bytes,
            "faiss_bytes": index.size_on_disk()}
    if show_skipped:
        data["skipped_files"] = store.skipped_images()
    if report:
        data["check"] = "ok"
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if key != "skipped_files":
            click.echo(f"{key:15} {value}")
    for row in data.get("skipped_files", []):
        click.echo(f"  skipped {row['error']}")
