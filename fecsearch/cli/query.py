"""`fecsearch query`: the faces of an index nearest in expression to a query face."""
from __future__ import annotations

import time
from pathlib import Path

import click

from fecsearch.cli.common import DEFAULT_INDEX, device_option, echo_json, fail


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("-k", default=10, show_default=True, help="How many faces to return.")
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path))
@click.option("--id", "face_id", type=int, help="Query with a face already in the index, by its face id.")
@click.option("--face", "face_number", type=int,
              help="Which face of each image (0 = leftmost; every face is detected and counted). Default: the "
                   "largest, found without looking for much smaller faces, so it is not numbered or counted.")
@click.option("--cropped", is_flag=True, help="Each image already is a face crop: no detection.")
@click.option("--person", help="Only this person's faces (an id or a name from `fecsearch people`).")
@click.option("--other-people", is_flag=True,
              help="Leave out every face of the query face's own identity: the same expression on someone else.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON (a list when there are several queries).")
@click.option("--sheet", type=click.Path(path_type=Path),
              help="Write a contact sheet of the query and its results (several queries: OUT-1.jpg, OUT-2.jpg, ...).")
@device_option
def query(images, k, index_dir, face_id, face_number, cropped, person, other_people, as_json, sheet, device, runtime):
    """The K indexed faces whose expression is nearest to each image's face.

    IMAGES are files or folders (every image in them); the model and index load once for all of
    them. An image that cannot be used gets one line naming it, and the others are answered.

    \b
    Examples:
      fecsearch query smile.jpg -k 10
      fecsearch query group.jpg --face 2 --json
      fecsearch query queries/ --json > answers.json
      fecsearch query --id 42 --sheet similar.jpg
      fecsearch query laugh.jpg --person Ada          # when Ada laughed like this
      fecsearch query frown.jpg --other-people        # someone else making this face
    """
    from fecsearch.models.config import MissingWeights
    from fecsearch.query.search import Searcher
    from fecsearch.runtime.onnx import RuntimeUnavailable
    from fecsearch.store.database import ModelMismatch

    if bool(images) == (face_id is not None):
        raise click.UsageError("give either an IMAGE or --id FACE_ID (IMAGES may be several files or folders)")
    problems = (FileNotFoundError, LookupError, MissingWeights, ModelMismatch, ValueError, RuntimeUnavailable)
    try:
        searcher = Searcher(index_dir, device=device, runtime=runtime)
    except problems as err:
        fail(str(err).strip("'\""))
    filters = {"person": person, "other_people": other_people}
    if face_id is not None:
        try:
            answer(searcher, searcher.query_face_id(face_id, identity=other_people), k, False, as_json, sheet,
                   time.time(), as_list=False, **filters)
        except LookupError as err:
            fail(str(err).strip("'\""))
        return
    from fecsearch.faces.images import BadImage, find_images  # here: `--id` never loads Pillow

    problems += (BadImage,)
    files, skipped = [], []
    for image in images:
        if image.is_dir():
            found, unreadable = find_images(image)
            files += found
            skipped += [f"{path}: {reason}" for path, reason in unreadable]
        else:
            files.append(image)
    several = len(files) > 1 or any(image.is_dir() for image in images)
    answers = []
    for n, path in enumerate(files, 1):
        started = time.time()
        out = sheet.with_name(f"{sheet.stem}-{n}{sheet.suffix}") if sheet and several else sheet
        try:
            q = searcher.query_image(path, face=face_number, cropped=cropped, identity=other_people)
            answers.append(answer(searcher, q, k, cropped, as_json, out, started, as_list=several, **filters))
        except problems as err:
            if not several:
                fail(str(err).strip("'\""))
            skipped.append(str(err).strip("'\""))
            click.echo(f"skipped {skipped[-1]}", err=True)
            continue
    if as_json and several:
        echo_json(answers)
    if several:
        click.echo(f"{len(answers)} of {len(files)} images answered; {len(skipped)} skipped", err=True)
        if not answers:
            raise SystemExit(1)


def answer(searcher, q, k: int, cropped: bool, as_json: bool, sheet: Path | None, started: float,
           as_list: bool, person=None, other_people: bool = False) -> dict:
    """Search one query face and print (or, for a list of queries, return) its answer."""
    from fecsearch.query.sheets import clock, face_thumbnail, query_sheet

    exclude = searcher.other_people(q) if other_people else None
    results = searcher.search(q.vector, k, person=person, exclude=exclude)
    if sheet:
        query_sheet(face_thumbnail(q.source, q.face.box) if not cropped else q.face.crop, results, sheet)
    data = {"query": {"source": q.source, "face": q.face_number, "faces_found": q.faces_found,
                      "box": [round(v, 1) for v in q.face.box],
                      "face_id": q.face_id},  # set when the query face is in the index
            "model": searcher.model_name, "results": [r.to_dict() for r in results],
            "filters": {"person": searcher.find_person(person) if person is not None else None,
                        "other_people": other_people, "faces_left_out": len(exclude) if exclude else 0},
            "seconds": round(time.time() - started, 3)}
    if as_json:
        if not as_list:
            echo_json(data)
        return data
    indexed = f" (indexed as face {q.face_id})" if q.face_id is not None else ""
    which = f"face {q.face_number} of {q.faces_found}" if q.faces_found is not None else "its largest face"
    click.echo(f"query: {q.source} {which}{indexed}, box "
               f"{tuple(round(v) for v in q.face.box)}; model {searcher.model_name}")
    click.echo(f"{'rank':>4}  {'distance':>8}  {'face':>6}  path  [box]")
    for r in results:
        at = f"  at {clock(r.time)}" if r.time is not None else ""
        click.echo(f"{r.rank:>4}  {r.distance:8.4f}  {r.face_id:>6}  {r.path}{at}  {[round(v) for v in r.box]}")
    if sheet:
        click.echo(f"sheet: {sheet}")
    return data


@click.command()
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--like", "like", required=True, type=click.Path(path_type=Path),
              help="A photo whose (largest) face shows the expression to look for.")
@click.option("-k", default=10, show_default=True, help="How many moments to list.")
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path))
@click.option("--face", "face_number", type=int, help="Which face of the --like photo (default: the largest).")
@click.option("--json", "as_json", is_flag=True, help="Print the moments as JSON.")
@click.option("--sheet", type=click.Path(path_type=Path), help="Write a contact sheet of the moments' frames.")
@device_option
def moments(video, like, k, index_dir, face_number, as_json, sheet, device, runtime):
    """When in VIDEO a face shows the expression of the face in --like (VIDEO must be indexed).

    Lists the k moments nearest in expression, each with its time and the span of frames in which
    that face kept the expression.

    \b
    Examples:
      fecsearch index ~/Videos
      fecsearch moments ~/Videos/party.mp4 --like frown.jpg
      fecsearch moments talk.mp4 --like laugh.jpg -k 5 --json
    """
    from fecsearch.faces.images import BadImage
    from fecsearch.models.config import MissingWeights
    from fecsearch.query.search import Searcher
    from fecsearch.query.sheets import clock, face_thumbnail, query_sheet
    from fecsearch.runtime.onnx import RuntimeUnavailable
    from fecsearch.store.database import ModelMismatch

    try:
        searcher = Searcher(index_dir, device=device, runtime=runtime)
        faces = searcher.faces_of_file(video)
        if not faces:
            fail(f"{video}: not in {index_dir}, or no face was found in it; index its folder with "
                 f"`fecsearch index FOLDER --index {index_dir}`")
        q = searcher.query_image(like, face=face_number)
        results = searcher.search(q.vector, k, within=faces)
    except (FileNotFoundError, BadImage, LookupError, MissingWeights, ModelMismatch, ValueError,
            RuntimeUnavailable) as err:
        fail(str(err).strip("'\""))
    if sheet:
        query_sheet(face_thumbnail(q.source, q.face.box), results, sheet)
    if as_json:
        echo_json({"video": str(video), "like": str(like), "faces_in_video": len(faces),
                   "moments": [r.to_dict() for r in results]})
        return
    click.echo(f"{len(faces)} faces kept in {video}; the {len(results)} nearest in expression to {like}:")
    click.echo(f"{'rank':>4}  {'distance':>8}  {'time':>9}  {'from':>9}  {'to':>9}  face")
    for r in results:
        start, end = r.run or (r.time, r.time)
        click.echo(f"{r.rank:>4}  {r.distance:8.4f}  {clock(r.time):>9}  {clock(start):>9}  {clock(end):>9}  "
                   f"{r.face_id}")
    if sheet:
        click.echo(f"sheet: {sheet}")
