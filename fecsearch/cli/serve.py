"""`fecsearch serve`: the search and rating pages over HTTP."""
from __future__ import annotations

import os
from pathlib import Path

import click

from fecsearch.cli.common import (DEFAULT_INDEX, detector_options, device_option, fail, make_detector_config,
                                  study_options)


@click.command()
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address lets other machines search your photos.")
@click.option("--port", default=8000, show_default=True)
@click.option("--max-upload-mb", default=20.0, show_default=True, help="Larger uploads are refused with HTTP 413.")
@click.option("--rate", "rate_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Turn on the rating page for this folder of face crops: the rank-difference study of "
                   "`fecsearch bench rank-diff --data FOLDER` with the same --a/--b/--queries/--max-n/--seed.")
@click.option("--votes", "votes_db", type=click.Path(path_type=Path), default=Path("votes.db"), show_default=True,
              help="SQLite file the rating page writes votes to (what `bench rank-diff --judge people` reads).")
@study_options("Rating study: ")
@detector_options
@device_option
def serve(index_dir, host, port, max_upload_mb, rate_dir, votes_db, model_a, model_b, n_queries, max_n, seed,
          min_face, min_prob, thresholds, canvas, device, runtime):
    """Serve an index: a search page at /, a rating page at /rate, a JSON API under /api.

    API: GET /api/health, /api/info, /api/summary?n=10; POST /api/search?k=10[&face=N][&all=1][&cropped=1]
    with an image (multipart field 'image', or the bytes with an image/* Content-Type);
    GET /api/faces/ID, /api/faces/ID/similar?k=10, /api/faces/ID/thumbnail?size=160;
    rating: GET /api/rating, /api/rating/next?rater=NAME, POST /api/rating/vote.
    Errors are JSON {"error": ..., "status": ...}: 400 bad request or upload, 404 unknown
    face, 413 upload too large.

    \b
    Examples:
      fecsearch serve --index indexes/default
      fecsearch serve --index indexes/default --rate ../shared/data/ferplus/valid --votes votes.db
      curl -F image=@face.jpg 'http://127.0.0.1:8000/api/search?k=5'
    """
    import uvicorn

    from fecsearch.faces.images import BadImage
    from fecsearch.models.config import MissingWeights
    from fecsearch.runtime.onnx import RuntimeUnavailable
    from fecsearch.serve.app import create_app, is_loopback
    from fecsearch.serve.library import Library
    from fecsearch.serve.rating import Rating
    from fecsearch.store.database import ModelMismatch

    slots, threads = 1, None
    if not (device or "").startswith("cuda"):
        # One inference per core, each on one thread (see Library).
        slots, threads = max(1, os.cpu_count() or 1), 1
    try:
        library = Library(index_dir, device=device, inference_slots=slots, runtime=runtime, threads=threads,
                          detector_config=make_detector_config(min_face, min_prob, thresholds, canvas))
    except (FileNotFoundError, MissingWeights, ModelMismatch, ValueError, BadImage, RuntimeUnavailable) as err:
        fail(str(err).strip("'\""))
    if threads == 1 and library.searcher.model.runtime == "torch":
        import torch

        torch.set_num_threads(1)
    rating = None
    if rate_dir:
        from fecsearch.evaluation.rankdiff import plan_study

        click.echo(f"preparing the rating study over {rate_dir} ...")
        try:
            rating = Rating(plan_study(rate_dir, model_a, model_b, n_queries, max_n, seed), votes_db)
        except (MissingWeights, KeyError, ValueError) as err:
            fail(str(err).strip("'\""))
        click.echo(f"rating: {len(rating.pairs)} pairs, votes in {votes_db}")
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can search the index "
                   f"and see its faces", err=True)
    info = library.info()
    click.echo(f"serving {info['faces']} faces ({info['model']}) on http://{host}:{port}/  (Ctrl-C stops)")
    app = create_app(library, rating, max_upload_bytes=int(max_upload_mb * 1024 * 1024))
    uvicorn.run(app, host=host, port=port, log_level="warning")
