"""Indexing a video against indexing its frames as photos of the same size, in one run.

    uv run python benchmarks/bench_video.py [--photos 24] [--repeats 2]

Makes a 1280x720 video (MPEG-4, 10 frames a second) showing each of the first N photos of
../shared/data/photos for one second, and the same N pictures as JPEG files (quality 95). Indexes
the video with --frame-rate 1 (N sampled frames) and the folder of JPEGs, each in a fresh process
and index, in turns; both with identities (the default for photos: a video describes every sampled
face while indexing, to follow it; photos are described after). Reports seconds per sampled frame
or photo, and their ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import av
import numpy as np
from photos_index import timed_fecsearch as timed
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"
SIZE = (1280, 720)


def letterboxed(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    scale = min(SIZE[0] / image.width, SIZE[1] / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    board = Image.new("RGB", SIZE, (40, 40, 40))
    board.paste(image, ((SIZE[0] - image.width) // 2, (SIZE[1] - image.height) // 2))
    return board


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    (work / "video").mkdir()
    (work / "frames").mkdir()
    pictures = [letterboxed(p) for p in sorted(PHOTOS.glob("*.jpg"))[:args.photos]]
    container = av.open(str(work / "video" / "clip.mp4"), "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    stream.options = {"g": "10", "qscale": "3"}
    for n, picture in enumerate(pictures):
        picture.save(work / "frames" / f"frame{n:03d}.jpg", quality=95)
        for _ in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")):
                container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    seconds = {"video": [], "photos": []}
    for r in range(args.repeats):
        seconds["video"].append(timed(["index", str(work / "video"), "--index", str(work / f"v{r}"), "--quiet",
                                       "--frame-rate", "1"]))
        seconds["photos"].append(timed(["index", str(work / "frames"), "--index", str(work / f"p{r}"), "--quiet"]))
    per = {k: round(statistics.median(v) / len(pictures), 3) for k, v in seconds.items()}
    print(json.dumps({"sampled_frames_or_photos": len(pictures), "size": list(SIZE),
                      "seconds_per_frame": per, "video_over_photos": round(per["video"] / per["photos"], 2),
                      "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
