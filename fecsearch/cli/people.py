"""`fecsearch people`: who is in an index's pictures, and names for them."""
from __future__ import annotations

from pathlib import Path

import click

from fecsearch.cli.common import DEFAULT_INDEX, device_option, echo_json, fail

SHEET_FACES = 24  # faces drawn on a person's sheet


@click.group(invoke_without_command=True)
@click.option("--index", "index_dir", default=DEFAULT_INDEX, show_default=True, type=click.Path(path_type=Path))
@click.option("--sheets", type=click.Path(path_type=Path), help="Write one contact sheet per person into this folder.")
@click.option("--min-faces", type=int, default=2, show_default=True, help="The fewest faces that make a person.")
@click.option("--json", "as_json", is_flag=True, help="Print the people as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@device_option
@click.pass_context
def people(ctx, index_dir, sheets, min_faces, as_json, quiet, device, runtime):
    """Find the people in an index: faces clustered by who they are.

    Gives every face that lacks one an identity descriptor (an index built with --no-identities,
    or before identities existed, gains them here: nothing is detected again), clusters them
    without being told how many people there are, and lists each person: id, name, faces. Names
    given with `fecsearch people name` stay with their person when photos are added and people
    are found again.

    \b
    Examples:
      fecsearch people
      fecsearch people --sheets people/ --json
      fecsearch people name 3 "Ada"
      fecsearch query smile.jpg --person Ada
    """
    if ctx.invoked_subcommand:
        ctx.obj = {"index_dir": index_dir}
        return
    from fecsearch.cli.index import describe_identities
    from fecsearch.people.cluster import find_people
    from fecsearch.store.database import DB_NAME, FaceStore
    from fecsearch.store.lock import WriterLock

    if not (index_dir / DB_NAME).exists():
        fail(f"{index_dir}: no fecsearch index here (no {DB_NAME}); build one with `fecsearch index`")
    with WriterLock(index_dir / (DB_NAME + ".lock"), lambda m: click.echo(m, err=True)):
        store = FaceStore(index_dir, create=False)
        try:
            described = describe_identities(store, device, runtime, quiet or as_json)
            summary = find_people(store, min_faces=min_faces)
            listed = list_people(store, sheets)
        finally:
            store.close()
    if as_json:
        echo_json({**summary.to_dict(), "identities": described.to_dict() if described else None, "people": listed})
        return
    if described and described.described:
        click.echo(f"{described.described} faces given identity descriptors", err=True)
    click.echo(f"{summary.people} people in {summary.faces} faces ({summary.alone} faces alone); "
               f"{summary.named_kept} named people found again")
    click.echo(f"{'person':>6}  {'faces':>5}  name / a face of theirs")
    for p in listed:
        click.echo(f"{p['id']:>6}  {p['faces']:>5}  {p['name'] or '-'}  {p['example']}"
                   + (f"  sheet: {p['sheet']}" if p.get("sheet") else ""))


def list_people(store, sheets: Path | None) -> list[dict]:
    """Every person with a face of theirs (the most confident detection), and their sheet when asked."""
    out = []
    for person in store.people():
        face_ids = store.person_faces(person["id"])
        rows = store.faces_by_id(face_ids)
        best = max(rows.values(), key=lambda r: (r["probability"] or 0, -r["id"]))
        entry = {"id": person["id"], "name": person["name"], "faces": person["faces"], "face_ids": face_ids,
                 "example": best["path"]}
        if sheets:
            entry["sheet"] = str(person_sheet(person, [rows[i] for i in face_ids[:SHEET_FACES]], sheets))
        out.append(entry)
    return out


def person_sheet(person: dict, rows: list[dict], folder: Path) -> Path:
    from fecsearch.faces.images import BadImage
    from fecsearch.query.sheets import contact_sheet, face_thumbnail

    tiles = []
    for row in rows:
        try:
            tiles.append((face_thumbnail(row["path"], (row["x1"], row["y1"], row["x2"], row["y2"]), time=row["time"]),
                          f"face {row['id']}"))
        except BadImage:  # the photo is gone since: the sheet shows the others
            continue
    title = person["name"] or f"person {person['id']}"
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in title)
    return contact_sheet(tiles, folder / f"{person['id']:04d}-{name}.jpg", outline_first=False)


@people.command("name")
@click.argument("person_id", type=int)
@click.argument("name")
@click.option("--index", "index_dir", default=None, type=click.Path(path_type=Path),
              help=f"Index folder (default: the one given to `people`, else {DEFAULT_INDEX}).")
@click.pass_context
def name_person(ctx, person_id, name, index_dir):
    """Name person PERSON_ID (as `fecsearch people` lists them) NAME.

    \b
    Example:
      fecsearch people name 3 "Ada Lovelace"
    """
    from fecsearch.store.database import DB_NAME, FaceStore
    from fecsearch.store.lock import WriterLock

    index_dir = index_dir or ctx.obj["index_dir"]
    if not (index_dir / DB_NAME).exists():
        fail(f"{index_dir}: no fecsearch index here (no {DB_NAME}); build one with `fecsearch index`")
    if not name.strip() or name.strip().isdigit():
        fail(f"'{name}': a name needs a letter (ids are numbers)")
    with WriterLock(index_dir / (DB_NAME + ".lock"), lambda m: click.echo(m, err=True)):
        store = FaceStore(index_dir, create=False)
        try:
            store.name_person(person_id, name.strip())
        except (LookupError, ValueError) as err:
            fail(str(err).strip("'\""))
        finally:
            store.close()
    click.echo(f"person {person_id} is now '{name.strip()}'")
