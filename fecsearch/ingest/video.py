"""Videos as indexing sees them: faces found in frames sampled at a steady rate, followed from frame
to frame, and one face kept for each stretch in which a face stays the same person with the same
expression, so that a face held still is one result, not one per frame.

Following: a face continues a track when its box overlaps (IoU >= TRACK_IOU) that of a face of the
track in the previous sampled frame and it is the same person (identity descriptors' cosine at
least SAME_TRACK; a cut to someone else in the same place starts a new track), greedily, best
overlap first. Within a track a new run starts
when the expression moves away from the run's first face by more than RUN_DISTANCE (Euclidean
between unit vectors). Each run keeps its most confident face (detection probability, then size),
with the run's first and last times.
"""
from __future__ import annotations

import numpy as np

from fecsearch.faces.align import box_iou
from fecsearch.vectors.metrics import normalise

TRACK_IOU = 0.3
# Cosine of identity descriptors for two faces in consecutive frames to be one person: the looser
# bound of --other-people (people/cluster.py), as consecutive frames of one person agree closely.
SAME_TRACK = 0.55
# Euclidean distance between unit expression vectors (0 to 2) beyond which a face's expression has
# changed: frames of one held expression stay well within it (tests/test_video.py).
RUN_DISTANCE = 0.35


def same_person(a, b) -> bool:
    if a.identity is None or b.identity is None:
        return True
    return float(np.dot(a.identity, b.identity)) >= SAME_TRACK


def tracks_of(faces: list, times: list[float]) -> list[list[int]]:
    """Indices of `faces` (each with .time and .box) grouped into tracks, each in time order.
    `times`: every sampled time, so that a frame without faces ends the tracks open before it."""
    order = {t: n for n, t in enumerate(sorted(set(times)))}
    by_frame: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        by_frame.setdefault(order[f.time], []).append(i)
    tracks: list[list[int]] = []
    open_tracks: list[int] = []  # tracks whose last face is in the previous frame
    for frame in sorted(by_frame):
        candidates = sorted(((box_iou(faces[tracks[t][-1]].box, faces[i].box), t, i) for t in open_tracks
                             if order[faces[tracks[t][-1]].time] == frame - 1 for i in by_frame[frame]
                             if same_person(faces[tracks[t][-1]], faces[i])), reverse=True)
        taken_tracks, placed, now_open = set(), set(), []
        for overlap, t, i in candidates:
            if overlap < TRACK_IOU or t in taken_tracks or i in placed:
                continue
            tracks[t].append(i)
            taken_tracks.add(t)
            placed.add(i)
            now_open.append(t)
        for i in by_frame[frame]:
            if i not in placed:
                tracks.append([i])
                now_open.append(len(tracks) - 1)
        open_tracks = now_open
    return tracks


def keep_one_per_run(faces: list, vectors: np.ndarray, times: list[float]) -> list[int]:
    """Which faces to index: the most confident of each run (see the module's docstring), in time
    order; each kept face's .run is set to its run's (first, last) time."""
    if not faces:
        return []
    unit = normalise(np.asarray(vectors, np.float32))
    kept = []
    for track in tracks_of(faces, times):
        runs, current = [], [track[0]]
        for i in track[1:]:
            if float(np.linalg.norm(unit[i] - unit[current[0]])) > RUN_DISTANCE:
                runs.append(current)
                current = [i]
            else:
                current.append(i)
        runs.append(current)
        for run in runs:
            best = max(run, key=lambda i: (faces[i].probability, faces[i].area, -i))
            faces[best].run = (faces[run[0]].time, faces[run[-1]].time)
            kept.append(best)
    return sorted(kept, key=lambda i: (faces[i].time, faces[i].box[0], i))
