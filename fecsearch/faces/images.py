"""Decode image files safely into RGB pictures, whatever their mode or orientation."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}  # decoded by faces/video.py


# Photos at least twice this long are decoded at a reduced scale (JPEG only): still ample for
# faces (the detector sees at most a 1024 px canvas; aligned faces are 48 to 224 px), and a
# fraction of the memory. Boxes and landmarks are given in the original's pixels all the same.
DECODE_LONG_SIDE = 3000


# Larger pictures are refused before decoding: a 30000x30000 header would ask for ~2.7 GB.
MAX_PIXELS = 64_000_000


class BadImage(Exception):
    """A file that cannot be used as an image; str() is one sentence naming the reason."""


LOG = logging.getLogger("fecsearch")


_decoding = threading.local()  # the file this thread is decoding, for Pillow's warnings


_show_warning = warnings.showwarning


def _show_warning_naming_the_file(message, category, filename, lineno, file=None, line=None):
    path = getattr(_decoding, "path", None)
    if path is None:
        return _show_warning(message, category, filename, lineno, file, line)
    LOG.warning("%s: %s", path, message)


# Every Pillow warning raised while a file is decoded is reported once per file, naming it.
warnings.showwarning = _show_warning_naming_the_file


warnings.filterwarnings("always", module="PIL")


def find_images(root: str | os.PathLike, videos: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """All image files below root (or root itself), sorted, and the entries that could not be walked;
    videos=True: video files too (faces/video.py).

    Symlinked folders are followed once: a loop is reported instead of walked forever.
    """
    root = Path(root)
    suffixes = IMAGE_SUFFIXES | (VIDEO_SUFFIXES if videos else set())
    if root.is_file():
        return [root], []
    found: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen_dirs: set[tuple[int, int]] = set()

    def on_error(err: OSError) -> None:
        problems.append((Path(err.filename or root), err.strerror or str(err)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            problems.append((Path(dirpath), "symbolic link loop, folder already visited"))
            dirnames[:] = []
            continue
        seen_dirs.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in suffixes:
                continue
            try:
                regular = path.is_file()
            except OSError as err:  # e.g. a symbolic link that points at itself
                problems.append((path, err.strerror or "cannot be examined"))
                continue
            if not regular:
                try:
                    os.stat(path)
                    reason = "not a regular file"
                except OSError as err:  # a dangling or looping symbolic link
                    reason = err.strerror or "cannot be examined"
                problems.append((path, reason))
                continue
            found.append(path)
    return found, problems


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (grey, 16-bit, palette, RGBA, CMYK, ...) to 8-bit RGB; an RGB image comes
    back as it is (Pillow's convert would copy it: a millisecond or two for a photo, on every query)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integers: stretch the used range to 8 bits instead of clipping to white.
        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        image = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
        arr = (arr - lo) / (hi - lo or 1.0) * 255.0
        image = Image.fromarray(arr.astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white rather than whatever colour the pixels hide.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file as an upright RGB picture, or raise BadImage saying why not."""
    return decode_image(read_bytes(path), path, max_pixels)


def original_scale(image: Image.Image) -> float:
    """Original pixels per decoded pixel (above 1 when decode_image decoded a large JPEG reduced)."""
    return float(image.info.get("decode_scale", 1.0))


def original_size(image: Image.Image) -> tuple[int, int]:
    return tuple(image.info.get("original_size", image.size))


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadImage(f"{path}: file not found") from None
    except PermissionError:
        raise BadImage(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise BadImage(f"{path}: is a folder, not an image") from None
    except OSError as err:
        raise BadImage(f"{path}: cannot be read ({err.strerror or err})") from None


def decode_image(data: bytes, path: str | os.PathLike = "<bytes>", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file's bytes as an upright RGB picture, or raise BadImage naming `path`."""
    path = Path(path)
    if not data:
        raise BadImage(f"{path}: file is empty")
    # Pillow warns about odd files (e.g. "Tag data larger than file") without saying which one.
    _decoding.path = path
    try:
        return _decode(data, path, max_pixels)
    finally:
        _decoding.path = None


ORIENTATION = 0x0112  # the EXIF tag that says how the camera was turned


def _decode(data: bytes, path: Path, max_pixels: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise BadImage(
                    f"{path}: image is {width}x{height} pixels, more than the {max_pixels:,} allowed"
                )
            if max(width, height) >= 2 * DECODE_LONG_SIDE:
                # JPEG's own scaling (1/2, 1/4, 1/8) decodes straight to a smaller picture, at least
                # DECODE_LONG_SIDE on its long side: a 48-megapixel photo takes 36 MB instead of 144.
                scale = DECODE_LONG_SIDE / max(width, height)
                image.draft("RGB", (int(width * scale) + 1, int(height * scale) + 1))
            image.load()
            decoded = image.size
            if image.getexif().get(ORIENTATION, 1) != 1:
                # exif_transpose returns a copy even when it turns nothing: a millisecond or two of a
                # query for a photo of a few megapixels, spent only where the file says it is turned.
                image = ImageOps.exif_transpose(image)
            picture = to_rgb(image)
            upright = (width, height) if picture.size == decoded else (height, width)
            picture.info["original_size"] = upright
            picture.info["decode_scale"] = upright[0] / picture.width
            return picture
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(f"{path}: not a recognised image format") from None
    except Image.DecompressionBombError as err:
        raise BadImage(f"{path}: refused as a decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(f"{path}: cannot be decoded ({err})") from None
