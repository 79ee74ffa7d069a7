"""The `fecsearch` command line: a thin layer over the pipeline's modules."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

DEFAULT_INDEX = "indexes/default"


def fail(message: str) -> None:
    raise click.ClickException(message)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def detector_options(f):
    f = click.option("--min-face", default=20, show_default=True, help="Smallest face MTCNN looks for, in pixels of the detection canvas.")(f)
    f = click.option("--min-prob", default=0.9, show_default=True, help="Drop faces MTCNN is less sure of.")(f)
    f = click.option("--thresholds", default="0.6,0.7,0.7", show_default=True, help="MTCNN's three stage thresholds.")(f)
    f = click.option("--canvas", default=1024, show_default=True, help="Detection canvas size: larger finds smaller faces, slower.")(f)
    return f


def make_detector_config(min_face, min_prob, thresholds, canvas):
    from .faces import DetectorConfig

    try:
        th = tuple(float(v) for v in thresholds.split(","))
        assert len(th) == 3
    except Exception:
        fail(f"--thresholds takes three numbers separated by commas, not '{thresholds}'")
    return DetectorConfig(min_face_size=min_face, thresholds=th, min_probability=min_prob, canvas_size=canvas)


def device_option(f):
    return click.option("--device", default=None, help="torch device (default: cuda when available, else cpu).")(f)


def pick_device(device):
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


class IndexProblem(click.ClickException):
    exit_code = 2


class Commands(click.Group):
    """Every command: an index that cannot be used ends the run with one sentence and exit code 2."""

    def invoke(self, ctx):
        from .store import IndexUnusable

        try:
            return super().invoke(ctx)
        except IndexUnusable as err:
            raise IndexProblem(str(err)) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fecsearch")
def main():
    """Find faces by facial expression.

    \b
    fecsearch index ./photos               embed every face of a folder
    fecsearch query face.jpg -k 10         the 10 faces whose expression is nearest
    fecsearch info                         what an index holds
    fecsearch models                       the models available
    """


@main.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json):
    """The registered models: trunk, input, output, whether their weights are here, and what was
    measured of them (benchmarks/bench_models.py: faces/s here, FER+ valid vote-triplet accuracy,
    K-NN mean AUC, CK+48 precision@5).

    \b
    Example:
      fecsearch models --json
    """
    from .models.registry import DEFAULT_MODEL, WEIGHTS_DIR, get_config, list_models, weights_path

    measured_path = WEIGHTS_DIR / "measured.json"
    measured = json.loads(measured_path.read_text()) if measured_path.exists() else {}
    rows = []
    for name in list_models():
        c = get_config(name)
        path = weights_path(c)
        p = c.preprocess
        rows.append({"name": name, "default": name == DEFAULT_MODEL, "family": c.family, "trunk": c.trunk,
                     "input": f"{p.size}x{p.size} {'RGB' if p.channels == 3 and p.colour else 'grey'}",
                     "dim": c.embedding_size, "distance": c.distance,
                     "weights": "shipped" if path and path.exists() else "needs training or download",
                     "measured": measured.get(name, {})})
    if as_json:
        echo_json(rows)
        return
    click.echo(f"{'model':21} {'trunk':8} {'input':14} {'dim':>4}  {'faces/s':>7} {'triplets':>8} {'K-NN AUC':>8} "
               f"{'CK+ P@5':>7}  weights")
    for r in rows:
        m = r["measured"]

        def pct(key):
            return f"{m[key] * 100:.1f}" if key in m else "-"

        faces = f"{m['faces_per_second']:.0f}" if "faces_per_second" in m else "-"
        click.echo(f"{r['name']:21} {r['trunk']:8} {r['input']:14} {r['dim']:4}  {faces:>7} {pct('triplet_accuracy'):>8} "
                   f"{pct('knn_mean_auc'):>8} {pct('ckplus_precision_at_5'):>7}  {r['weights']}"
                   f"{'  (default)' if r['default'] else ''}")
    if measured.get("_run"):
        click.echo(f"measured {measured['_run']['date']} on this project's 2-core CPU: {measured['_run']['command']}")


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path),
              help="Index folder (SQLite database + FAISS file).")
@click.option("--model", "model_name", default=None, help="Embedding model (default: the index's, else fecnet-lite-16d).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Trained weights for --model.")
@click.option("--cropped", is_flag=True, help="Each image already is one face crop (FER, CelebA aligned): no detection.")
@click.option("--workers", type=int, default=None,
              help="Threads reading images (and, for photos, finding their faces). Default: one per core for photos, 4 with --cropped.")
@click.option("--chunk-size", type=int, help="Images committed per transaction (default 512 cropped, 16 photos).")
@click.option("--mirror/--no-mirror", default=True, show_default=True,
              help="A new index: embed each face with its mirror image and average them (more accurate, twice "
                   "the network's work). An existing index keeps what it was built with.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@detector_options
@device_option
def index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, as_json, quiet, min_face,
          min_prob, thresholds, canvas, device):
    """Embed every face of FOLDER (recursively) into an index.

    Runs again over the same folder embed only new or changed files and drop deleted ones; an
    interrupted run resumes where it stopped.

    \b
    Examples:
      fecsearch index ~/Pictures/party
      fecsearch index ../shared/data/ferplus/valid --cropped --index indexes/fer-valid
    """
    from .store import DB_NAME, WriterLock

    if not folder.exists():
        fail(f"{folder}: no such file or folder")
    if index_dir.exists() and not index_dir.is_dir():
        fail(f"{index_dir}: --index must be a folder, and this is a file")
    index_dir.mkdir(parents=True, exist_ok=True)
    # One writer per index: a second run waits here, after saying so, until the first is done.
    with WriterLock(index_dir / (DB_NAME + ".lock"), lambda m: click.echo(m, err=True)):
        run_index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, as_json, quiet,
                  make_detector_config(min_face, min_prob, thresholds, canvas), device)


def run_index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, as_json, quiet,
              detector_config, device):
    from .indexer import Indexer
    from .models.registry import DEFAULT_MODEL, MissingWeights, create_model
    from .search import weights_checksum
    from .store import FaceStore, ModelMismatch

    store = FaceStore(index_dir)
    model_name = model_name or store.meta("model") or DEFAULT_MODEL
    checkpoint = checkpoint or store.meta("checkpoint") or None
    device = pick_device(device)
    try:
        model = create_model(model_name, checkpoint=checkpoint, device=device)
        model.config = replace(model.config, mirror_average=mirror)
        indexer = Indexer(store, model, model_name, weights_checksum(model_name, checkpoint), cropped=cropped,
                          detector_config=detector_config,
                          workers=workers, chunk_size=chunk_size, device=device, progress=not quiet and not as_json,
                          report=lambda m: click.echo(m, err=True))
    except (MissingWeights, ModelMismatch, KeyError) as err:
        fail(str(err).strip("'\""))
    if checkpoint:
        store.set_meta("checkpoint", os.path.abspath(checkpoint))
    summary = indexer.run(folder)
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(
        f"{summary.images_found} images found: {summary.images_indexed} indexed, {summary.images_unchanged} unchanged, "
        f"{summary.images_removed} removed, {len(summary.skipped)} skipped; {summary.faces_added} faces added "
        f"({summary.faces_per_second:.0f}/s), {summary.faces_total} in the index ({summary.index_type}); "
        f"{summary.seconds:.1f}s")
    if summary.skipped:
        click.echo("skipped:")
        for path, reason in summary.skipped:
            click.echo(f"  {reason if reason.startswith(path) else f'{path}: {reason}'}")


@main.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("-k", default=10, show_default=True, help="How many faces to return.")
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path))
@click.option("--id", "face_id", type=int, help="Query with a face already in the index, by its face id.")
@click.option("--face", "face_number", type=int, help="Which face of IMAGE (0 = leftmost); default: the largest.")
@click.option("--cropped", is_flag=True, help="IMAGE already is a face crop: no detection.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--sheet", type=click.Path(path_type=Path), help="Write a contact sheet of the query and its results.")
@device_option
def query(image, k, index_dir, face_id, face_number, cropped, as_json, sheet, device):
    """The K indexed faces whose expression is nearest to IMAGE's face.

    \b
    Examples:
      fecsearch query smile.jpg -k 10
      fecsearch query group.jpg --face 2 --json
      fecsearch query --id 42 --sheet similar.jpg
    """
    from .images import BadImage
    from .models.registry import MissingWeights
    from .search import Searcher
    from .sheet import face_thumbnail, query_sheet
    from .store import ModelMismatch

    if (image is None) == (face_id is None):
        raise click.UsageError("give either an IMAGE or --id FACE_ID")
    started = time.time()
    try:
        searcher = Searcher(index_dir, device=pick_device(device))
        q = searcher.query_face_id(face_id) if face_id is not None else \
            searcher.query_image(image, face=face_number, cropped=cropped)
    except (FileNotFoundError, BadImage, LookupError, MissingWeights, ModelMismatch, ValueError) as err:
        fail(str(err).strip("'\""))
    results = searcher.search(q.vector, k)
    if sheet:
        query_tile = face_thumbnail(q.source, q.face.box) if not cropped else q.face.crop
        query_sheet(query_tile, results, sheet)
    if as_json:
        echo_json({"query": {"source": q.source, "face": q.face_number, "faces_found": q.faces_found,
                             "box": [round(v, 1) for v in q.face.box]},
                   "model": searcher.model_name, "results": [r.to_dict() for r in results],
                   "seconds": round(time.time() - started, 3)})
        return
    click.echo(f"query: {q.source} face {q.face_number} of {q.faces_found}, box "
               f"{tuple(round(v) for v in q.face.box)}; model {searcher.model_name}")
    click.echo(f"{'rank':>4}  {'distance':>8}  {'face':>6}  path  [box]")
    for r in results:
        click.echo(f"{r.rank:>4}  {r.distance:8.4f}  {r.face_id:>6}  {r.path}  {[round(v) for v in r.box]}")
    if sheet:
        click.echo(f"sheet: {sheet}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The .npz file to write.")
@click.option("--model", "model_name", default=None, help="Embedding model (default: fecnet-lite-16d).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--cropped", is_flag=True, help="Each image already is one face crop: no detection.")
@detector_options
@device_option
def embed(paths, out, model_name, checkpoint, cropped, min_face, min_prob, thresholds, canvas, device):
    """Embeddings of every face in PATHS (files or folders), without an index.

    The .npz holds `paths` (each face's source image), `embeddings` (float32, [n, d]) and
    `boxes` (x1, y1, x2, y2).

    \b
    Example:
      fecsearch embed ../shared/data/ckplus48 --cropped --out ck.npz
    """
    import numpy as np
    from tqdm import tqdm

    from .images import BadImage, find_images, load_image
    from .models.registry import DEFAULT_MODEL, MissingWeights, create_model
    from .pipeline import FacePipeline

    model_name = model_name or DEFAULT_MODEL
    try:
        model = create_model(model_name, checkpoint=checkpoint, device=pick_device(device))
    except (MissingWeights, KeyError) as err:
        fail(str(err).strip("'\""))
    pipeline = FacePipeline(model, cropped, make_detector_config(min_face, min_prob, thresholds, canvas))
    files, skipped = [], []
    for p in paths:
        found, problems = find_images(p)
        files += found
        skipped += [f"{path}: {reason}" for path, reason in problems]
    names, vectors, boxes = [], [], []
    for i in tqdm(range(0, len(files), 256 if cropped else 8), unit="batch", desc="embedding"):
        batch, images = [], []
        for f in files[i:i + (256 if cropped else 8)]:
            try:
                images.append(load_image(f))
                batch.append(f)
            except BadImage as err:
                skipped.append(str(err))
        found = pipeline.find_faces(images)
        faces = [face for fs in found for face in fs]
        vectors.append(pipeline.embed(faces))
        for f, fs in zip(batch, found):
            names += [str(f)] * len(fs)
            boxes += [face.box for face in fs]
    for s in skipped:
        click.echo(f"skipped {s}", err=True)
    dim = model.config.embedding_size
    emb = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, paths=np.array(names), embeddings=emb.astype(np.float32),
             boxes=np.array(boxes, np.float32).reshape(-1, 4), model=model_name)
    tmp.replace(out)
    click.echo(f"{len(names)} faces from {len(files) - len(skipped)} images -> {out} ({len(skipped)} skipped)")


@main.command()
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
    from .store import DB_NAME, FaceStore
    from .vector_index import VectorIndex

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
    data = {"index": str(index_dir), "model": store.meta("model"), "dim": int(store.meta("dim", "0") or 0),
            "distance": store.meta("distance"), "checkpoint": store.meta("checkpoint"), **store.counts(),
            "index_type": index.kind, "faiss_rebuilt": index.rebuilt, "database_bytes": db_bytes,
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


from . import cli_apps, cli_models, cli_serve  # noqa: E402,F401  register the other commands

if __name__ == "__main__":
    sys.exit(main())
