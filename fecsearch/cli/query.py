"""`fecsearch query`: the faces of an index nearest in expression to a query face."""
from __future__ import annotations

import time
from pathlib import Path

import click

from fecsearch.cli.common import DEFAULT_INDEX, device_option, echo_json, fail


@click.command()
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
    from fecsearch.faces.images import BadImage
    from fecsearch.models.config import MissingWeights
    from fecsearch.query.search import Searcher
    from fecsearch.query.sheets import face_thumbnail, query_sheet
    from fecsearch.store.database import ModelMismatch

    if (image is None) == (face_id is None):
        raise click.UsageError("give either an IMAGE or --id FACE_ID")
    started = time.time()
    try:
        searcher = Searcher(index_dir, device=device)
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
