"""Decoding: every mode to upright RGB, and bad files refused with a sentence that names them."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fecsearch.faces.images import BadImage, find_images, load_image


@pytest.fixture
def photo(photos):
    return Image.open(photos / "img1.jpg").convert("RGB").resize((120, 90))


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16", "LA", "1"])
def test_modes_become_rgb(tmp_path, photo, mode):
    if mode == "I;16":
        grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        image = Image.fromarray(grey)
        assert image.mode.startswith("I;16")
        suffix = ".png"
    else:
        image = photo.convert(mode)
        suffix = ".tif" if mode == "CMYK" else ".png"
    path = tmp_path / f"face{suffix}"
    image.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (120, 90)
    # the picture survives: it still correlates with the original's brightness
    a = np.asarray(out.convert("L"), float).ravel()
    b = np.asarray(photo.convert("L"), float).ravel()
    # (a dithered 1-bit picture keeps less of it)
    assert np.corrcoef(a, b)[0, 1] > (0.5 if mode == "1" else 0.8)


def test_exif_orientation_is_applied(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer must turn it 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    photo.save(path, exif=exif)
    assert load_image(path).size == (90, 120)


def test_transparent_areas_become_white(tmp_path):
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((5, 5)) == (255, 255, 255)


def huge_png_header(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name,content,reason", [
    ("empty.jpg", b"", "file is empty"),
    ("notes.jpg", b"these are my holiday notes\n", "not a recognised image format"),
    ("huge.png", huge_png_header(30000, 30000), "decompression bomb"),
    ("big.png", huge_png_header(9000, 9000), "9000x9000 pixels, more than the 64,000,000 allowed"),
])
def test_bad_files_are_named_with_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadImage) as err:
        load_image(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_truncated_jpeg(tmp_path, photos):
    data = (photos / "img2.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(BadImage, match="cut.jpg: cannot be decoded"):
        load_image(path)


def test_find_images_reports_loops_and_dangling_links(tmp_path, photo):
    photo.save(tmp_path / "a.jpg")
    (tmp_path / "sub").mkdir()
    photo.save(tmp_path / "sub" / "b.png")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dangling.jpg")
    os.symlink("self.jpg", tmp_path / "self.jpg")
    (tmp_path / "readme.txt").write_text("not an image")
    found, problems = find_images(tmp_path)
    assert [p.name for p in found] == ["a.jpg", "b.png"]
    reasons = {p.name: r for p, r in problems}
    assert "loop" in reasons["loop"]
    assert reasons["dangling.jpg"] == "No such file or directory"
    assert "symbolic links" in reasons["self.jpg"]
