"""Contact sheets: a query face and its nearest faces with distances (the paper's Figure 8)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow loads when a sheet is drawn: `query --id` without one never needs it
    from PIL import Image

TILE = 128


LABEL = 18


def face_thumbnail(path: str, box, size: int = TILE, margin: float = 0.15, time: float | None = None) -> Image.Image:
    """The face's box, grown by `margin` on each side and squared, from the original image (a
    video's frame at `time` seconds)."""
    from PIL import Image

    from fecsearch.faces.images import load_image, original_scale

    if time is not None:
        from fecsearch.faces.video import load_frame

        image = load_frame(path, time)
    else:
        image = load_image(path)
    x1, y1, x2, y2 = (v / original_scale(image) for v in box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    crop = image.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
    return crop.resize((size, size), Image.BICUBIC)


def contact_sheet(tiles: list[tuple[Image.Image, str]], out: str | Path, columns: int = 6,
                  outline_first: bool = True) -> Path:
    """Lay out (image, caption) tiles in a grid and save it; the first tile is outlined as the query."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(tiles):
        x, y = (i % columns) * TILE, (i // columns) * (TILE + LABEL)
        sheet.paste(tile.convert("RGB").resize((TILE, TILE)), (x, y))
        draw.text((x + 3, y + TILE + 3), caption, fill="black", font=font)
        if i == 0 and outline_first:
            draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), outline=(220, 30, 30), width=3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def clock(seconds: float) -> str:
    """A time into a video as m:ss.s (h:mm:ss past an hour)."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:04.1f}" if hours else f"{minutes}:{secs:04.1f}"


def query_sheet(query_crop: Image.Image, results, out: str | Path, columns: int = 6) -> Path:
    tiles = [(query_crop, "query")]
    tiles += [(face_thumbnail(r.path, r.box, time=r.time),
               f"#{r.rank}  d={r.distance:.3f}" + (f"  {clock(r.time)}" if r.time is not None else ""))
              for r in results]
    return contact_sheet(tiles, out, columns)
