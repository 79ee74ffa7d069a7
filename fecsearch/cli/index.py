"""`fecsearch index`, `embed`, `info` and `models`: building an index and looking at it."""
from __future__ import annotations

import json
from pathlib import Path

import click

from fecsearch.cli.common import (DEFAULT_INDEX, IndexProblem, detector_options, device_option, echo_json, fail,
                                  make_detector_config, pick_device)


@click.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json):
    """The registered models: trunk, input, output, whether their weights are here, and what was
    measured of them (benchmarks/bench_models.py: faces/s here, FER+ valid vote-triplet accuracy,
    K-NN mean AUC, CK+48 precision@5).

    \b
    Example:
      fecsearch models --json
    """
    from fecsearch.models.config import DEFAULT_MODEL, WEIGHTS_DIR, get_config, list_models, weights_path

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


@click.command()
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
@click.option("--rebuild-index", is_flag=True,
              help="Build the FAISS index again from the database (retraining IVF lists) instead of adding "
                   "and removing what changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@detector_options
@device_option
def index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, rebuild_index, as_json,
          quiet, min_face, min_prob, thresholds, canvas, device):
    """Embed every face of FOLDER (recursively) into an index.

    Runs again over the same folder embed only new or changed files and drop deleted ones; an
    interrupted run resumes where it stopped.

    \b
    Examples:
      fecsearch index ~/Pictures/party
      fecsearch index ../shared/data/ferplus/valid --cropped --index indexes/fer-valid
    """
    from fecsearch.store.database import DB_NAME
    from fecsearch.store.lock import WriterLock

    if not folder.exists():
        fail(f"{folder}: no such file or folder")
    if index_dir.exists() and not index_dir.is_dir():
        fail(f"{index_dir}: --index must be a folder, and this is a file")
    index_dir.mkdir(parents=True, exist_ok=True)
    # One writer per index: a second run waits here, after saying so, until the first is done.
    with WriterLock(index_dir / (DB_NAME + ".lock"), lambda m: click.echo(m, err=True)):
        run_index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, rebuild_index,
                  as_json, quiet, make_detector_config(min_face, min_prob, thresholds, canvas), device)


def run_index(folder, index_dir, model_name, checkpoint, cropped, workers, chunk_size, mirror, rebuild_index, as_json,
              quiet, detector_config, device):
    from fecsearch.ingest.indexer import Indexer
    from fecsearch.models.config import MissingWeights
    from fecsearch.store.database import FaceStore, ModelMismatch

    try:
        indexer = Indexer.for_folder(FaceStore(index_dir), model_name, checkpoint, mirror, cropped=cropped,
                                     detector_config=detector_config, workers=workers, chunk_size=chunk_size,
                                     device=pick_device(device), progress=not quiet and not as_json,
                                     report=lambda m: click.echo(m, err=True), rebuild_index=rebuild_index)
    except (MissingWeights, ModelMismatch, KeyError) as err:
        fail(str(err).strip("'\""))
    summary = indexer.run(folder)
    if as_json:
        echo_json(summary.to_dict())
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


@click.command()
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

    from fecsearch.faces.images import find_images
    from fecsearch.models.config import DEFAULT_MODEL
    from fecsearch.models.pipeline import FacePipeline, embed_files
    from fecsearch.models.registry import MissingWeights, create_model

    model_name = model_name or DEFAULT_MODEL
    try:
        model = create_model(model_name, checkpoint=checkpoint, device=pick_device(device))
    except (MissingWeights, KeyError) as err:
        fail(str(err).strip("'\""))
    pipeline = FacePipeline(model, cropped, make_detector_config(min_face, min_prob, thresholds, canvas),
                            device=pick_device(device))
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
             boxes=np.array(faces.boxes, np.float32).reshape(-1, 4), model=model_name)
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
            "faiss_rebuilt": index.rebuilt, "faiss": index.how, "database_bytes": db_bytes, "faiss_bytes": index.size_on_disk()}
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
