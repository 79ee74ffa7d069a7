"""Give every indexed face an identity descriptor (models/identity.py), embedding only what is missing.

Faces are cropped again from their photos with the landmarks the index stored, so an index built
before identities existed, or by another engine, gains them without detecting anything again. A
photo that is gone or has changed since it was indexed cannot be described: its faces get an empty
descriptor (reported; the next `fecsearch index` run indexes the new file, and its new faces are
described then). Work is written in transactions of whole images, so a run cut short resumes.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby

import numpy as np

from fecsearch.faces.images import BadImage, decode_image, original_scale, read_bytes
from fecsearch.models.identity import IDENTITY_DIM, identity_crop


@dataclass
class DescribeSummary:
    described: int = 0
    missing_before: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) per image not described

    def to_dict(self) -> dict:
        return {"faces_described": self.described, "faces_missing_before": self.missing_before,
                "images_skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def crops_of_image(rows: list[dict]) -> tuple[list, str | None]:
    """The identity crops of one image's faces (rows of store.faces_without_identity; a video's faces
    come from their frames), or the reason there are none."""
    import hashlib

    from fecsearch.faces.images import file_sha256
    from fecsearch.faces.video import is_video, load_frame

    path = rows[0]["path"]
    try:
        video = is_video(path)
        if video:
            data, digest = None, file_sha256(path)
        else:
            data = read_bytes(path)
            digest = hashlib.sha256(data).hexdigest()
        if rows[0]["sha256"] and digest != rows[0]["sha256"]:
            return [], "changed since it was indexed; run `fecsearch index` on its folder again"
        frames = {}
        if video:
            for row in rows:
                if row["time"] not in frames:
                    frames[row["time"]] = load_frame(path, row["time"])
        else:
            frames[None] = decode_image(data, path)
    except BadImage as err:
        return [], str(err).removeprefix(f"{path}: ")
    except OSError as err:
        return [], err.strerror or str(err)
    crops = []
    for row in rows:
        image = frames[row["time"] if video else None]
        marks = json.loads(row["landmarks"]) if row["landmarks"] else None
        crops.append(identity_crop(image, marks, original_scale(image)))
    return crops, None


def describe_missing(store, network, batch_images: int = 64, workers: int = 2, progress: bool = False,
                     report=None) -> DescribeSummary:
    """Describe every face of `store` that has no identity descriptor yet; `network`: IdentityNetwork."""
    from tqdm import tqdm

    summary = DescribeSummary(missing_before=store.missing_identities())
    bar = tqdm(total=summary.missing_before, unit="face", desc="identities", disable=not progress)
    with ThreadPoolExecutor(workers) as pool:
        while True:
            rows = store.faces_without_identity(limit=batch_images)
            if not rows:
                break
            images = [list(group) for _, group in groupby(rows, key=lambda r: r["image_id"])]
            ids, crops, empty = [], [], []
            for image_rows, (image_crops, reason) in zip(images, pool.map(crops_of_image, images)):
                if reason:
                    summary.skipped.append((image_rows[0]["path"], reason))
                    if report:
                        report(f"skipped {image_rows[0]['path']}: {reason}")
                    empty += [r["id"] for r in image_rows]
                    continue
                ids += [r["id"] for r in image_rows]
                crops += image_crops
            descriptors = network.describe(crops)
            store.write_identities(ids + empty, np.concatenate([descriptors, np.zeros((len(empty), IDENTITY_DIM))]),
                                   network.checksum, empty=set(empty))
            summary.described += len(ids)
            bar.update(len(ids) + len(empty))
    bar.close()
    return summary
