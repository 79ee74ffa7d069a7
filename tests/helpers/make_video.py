"""A test video of known faces at known times, some of its frames damaged (tests/test_video.py).

    python tests/helpers/make_video.py OUT.mp4     # writes it, and prints its segments as JSON
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FPS = 10
SIZE = (640, 480)


def frame_of(path: Path, kind: str) -> Image.Image:
    """A photo letterboxed into the frame, or a FER+ face (48 px) enlarged on a grey background."""
    image = Image.open(path).convert("RGB")
    board = Image.new("RGB", SIZE, (90, 90, 90))
    if kind == "face":
        face = image.resize((200, 200), Image.BICUBIC)
        board.paste(face, ((SIZE[0] - 200) // 2, (SIZE[1] - 200) // 2))
        return board
    scale = min(SIZE[0] / image.width, SIZE[1] / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    board.paste(image, ((SIZE[0] - image.width) // 2, (SIZE[1] - image.height) // 2))
    return board


# (file under ../shared/data, kind, seconds on screen): held still, each of them
SEGMENTS = [("photos/img1.jpg", "photo", 3.0),
            ("photos/img29.jpg", "photo", 2.0),
            ("photos/img16.jpg", "photo", 2.0),
            ("ferplus/valid/fer0028640.png", "face", 2.0),
            ("photos/img47.jpg", "photo", 2.0)]


def make_video(out: Path, segments=SEGMENTS, damage: bool = True) -> list[dict]:
    """Write the video (MPEG-4 part 2 in an .mp4) and return its segments with their start and end
    times. damage=True overwrites a stretch of bytes in the second half of the file, so that some
    packets no longer decode."""
    container = av.open(str(out), "w")
    stream = container.add_stream("mpeg4", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    stream.options = {"g": str(FPS)}  # a key frame every second: damage stays local
    placed, start = [], 0.0
    for name, kind, seconds in segments:
        picture = np.asarray(frame_of(DATA / name, kind))
        for _ in range(round(seconds * FPS)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        placed.append({"file": name, "kind": kind, "start": start, "end": start + seconds})
        start += seconds
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    if damage:
        data = bytearray(out.read_bytes())
        at = int(len(data) * 0.70)
        data[at:at + 3000] = bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))
        out.write_bytes(bytes(data))
    return placed


if __name__ == "__main__":
    print(json.dumps(make_video(Path(sys.argv[1])), indent=1))
