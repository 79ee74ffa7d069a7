"""Frames of video files, sampled at a steady rate, decoded with PyAV (which ships its own FFmpeg).

A video is indexed like a photo whose faces each carry a time: `sample_frames` gives the frames
to look for faces in, `load_frame` the picture at one face's time again (sheets, thumbnails,
identity crops). Packets that do not decode (a damaged stretch of the file) are skipped and
counted; a file that cannot be opened, or yields no frame at all, raises BadImage like a bad photo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from fecsearch.faces.images import VIDEO_SUFFIXES, BadImage, to_rgb

# Frames a second that indexing samples by default: a change of expression lasts about a second.
DEFAULT_FRAME_RATE = 2.0


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Sampling:
    frames: int = 0  # frames sampled
    damaged: int = 0  # packets that did not decode
    duration: float = 0.0  # seconds, as far as frames were decoded


def _av(path: Path):
    """PyAV, or BadImage saying how to install it (videos are an extra: it weighs 100 MB)."""
    try:
        import av
    except ModuleNotFoundError:
        raise BadImage(f"{path}: videos need PyAV, which is not installed here: pip install 'fecsearch[video]'") \
            from None
    return av


def _open(path: Path):
    av = _av(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise BadImage(f"{path}: not a video that can be read ({_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise BadImage(f"{path}: holds no video stream")
    return container


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err).split(": '")[0] or type(err).__name__


def sample_frames(path: str | os.PathLike, rate: float = DEFAULT_FRAME_RATE,
                  sampling: Sampling | None = None) -> Iterator[tuple[float, Image.Image]]:
    """(time in seconds, RGB frame) every 1/rate seconds: the first frame at or after each step."""
    path = Path(path)
    av = _av(path)
    sampling = sampling if sampling is not None else Sampling()
    step, due = 1.0 / rate, 0.0
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError:  # the demuxer lost its way in damaged data: what came before stays
                sampling.damaged += 1
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                sampling.damaged += 1
                continue
            for frame in frames:
                if frame.time is None:
                    continue
                sampling.duration = max(sampling.duration, float(frame.time))
                if frame.time + 1e-6 < due:
                    continue
                due = (int(frame.time / step + 1e-6) + 1) * step
                sampling.frames += 1
                yield float(frame.time), to_rgb(frame.to_image())
    finally:
        container.close()
    if not sampling.frames:
        raise BadImage(f"{path}: no frame could be decoded" + (f" ({sampling.damaged} damaged packets)"
                                                               if sampling.damaged else ""))


def load_frame(path: str | os.PathLike, time: float) -> Image.Image:
    """The frame shown at `time` seconds (the first at or after it), as RGB."""
    path = Path(path)
    av = _av(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.time_base:
            container.seek(max(0, int(time / stream.time_base)), stream=stream, backward=True, any_frame=False)
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                if frame.time is not None and frame.time + 1e-3 >= time:
                    return to_rgb(frame.to_image())
    finally:
        container.close()
    raise BadImage(f"{path}: no frame at {time:.2f} s")
