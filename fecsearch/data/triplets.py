"""Expression triplets in FEC's convention, from FEC's CSV or from FER+ votes."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fecsearch.data.labels import LabelledFaces

TRIPLET_TYPES = ("ONE_CLASS_TRIPLET", "TWO_CLASS_TRIPLET", "THREE_CLASS_TRIPLET")


# Eq. (1): a larger margin where the three faces come from different emotion classes.
MARGINS = {"ONE_CLASS_TRIPLET": 0.1, "TWO_CLASS_TRIPLET": 0.2, "THREE_CLASS_TRIPLET": 0.2}


@dataclass
class Triplet:
    faces: tuple[str, str, str]
    type: str
    annotations: list[tuple[str, int]] = field(default_factory=list)  # (rater id, odd one out 1..3)

    @property
    def odd(self) -> int:
        """The majority odd-one-out (1..3)."""
        counts = np.bincount([a for _, a in self.annotations], minlength=4)
        return int(counts.argmax())

    def agreement(self) -> float:
        counts = np.bincount([a for _, a in self.annotations], minlength=4)
        return counts.max() / max(1, counts.sum())


def tv_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(p - q).sum(axis=-1)


def ferplus_vote_triplets(faces: LabelledFaces, count: int, seed: int = 0, margin: float = 0.25,
                          root: Path | None = None) -> list[Triplet]:
    """FER+ vote triplets as defined in shared/data/README.md.

    Classes are drawn uniformly for each type; a triplet is kept only when its most similar pair
    (smallest total-variation distance between vote distributions) beats the next by `margin`.
    Equal numbers of each type are produced.
    """
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(faces.labels == c) for c in range(faces.votes.shape[1])]
    classes = [c for c, idx in enumerate(by_class) if len(idx) >= 2]
    names = [str(p.relative_to(root)) if root else str(p) for p in faces.paths]
    out: list[Triplet] = []
    per_type = -(-count // 3)
    for kind in TRIPLET_TYPES:
        made, tries = 0, 0
        while made < per_type and tries < per_type * 200:
            tries += 1
            if kind == "ONE_CLASS_TRIPLET":
                c = rng.choice(classes)
                if len(by_class[c]) < 3:
                    continue
                idx = rng.choice(by_class[c], 3, replace=False)
            elif kind == "TWO_CLASS_TRIPLET":
                a, b = rng.choice(classes, 2, replace=False)
                idx = np.concatenate([rng.choice(by_class[a], 2, replace=False), rng.choice(by_class[b], 1)])
                rng.shuffle(idx)
            else:
                cs = rng.choice(classes, 3, replace=False)
                idx = np.array([rng.choice(by_class[c]) for c in cs])
            v = faces.votes[idx]
            # pair distances in the order (1,2), (1,3), (2,3); the odd one is the face not in the pair
            d = np.array([tv_distance(v[0], v[1]), tv_distance(v[0], v[2]), tv_distance(v[1], v[2])])
            order = np.argsort(d)
            if d[order[1]] - d[order[0]] < margin:
                continue
            odd = (3, 2, 1)[order[0]]
            out.append(Triplet(tuple(names[i] for i in idx), kind, [("ferplus-votes", odd)]))
            made += 1
    return out[:count] if len(out) > count else out


def label_triplets(faces: LabelledFaces, count: int, seed: int = 0, root: Path | None = None) -> list[Triplet]:
    """AFFNet-TL's triplets: two faces of one emotion label and a third of another, which is the odd one.

    Only labels, no human similarity judgement: the paper's baseline for what labels alone teach.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(set(faces.labels.tolist()))
    by_class = {c: np.flatnonzero(faces.labels == c) for c in classes}
    classes = [c for c in classes if len(by_class[c]) >= 2]
    names = [str(p.relative_to(root)) if root else str(p) for p in faces.paths]
    out = []
    for _ in range(count):
        a, b = rng.choice(classes, 2, replace=False)
        pair = rng.choice(by_class[a], 2, replace=False)
        odd_face = rng.choice(by_class[b])
        position = int(rng.integers(3))
        idx = list(pair)
        idx.insert(position, odd_face)
        out.append(Triplet(tuple(names[i] for i in idx), "TWO_CLASS_TRIPLET", [("labels", position + 1)]))
    return out


def save_triplets(triplets: list[Triplet], path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for t in triplets:
            f.write(json.dumps({"faces": list(t.faces), "type": t.type, "annotations": t.annotations}) + "\n")
    tmp.replace(path)


def load_triplets(path: str | Path) -> list[Triplet]:
    with open(path) as f:
        return [Triplet(tuple(d["faces"]), d["type"], [tuple(a) for a in d["annotations"]])
                for d in map(json.loads, f) if d]


def parse_fec_csv(path: str | Path) -> list[dict]:
    """Rows of FEC's official CSV (no header).

    Per face: URL, then its box as x_min/width, x_max/width, y_min/height, y_max/height; after the
    three faces the triplet type, then (annotator id, odd-one-out) pairs.
    """
    rows = []
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row if c.strip() != ""]
            if len(row) < 16:
                raise ValueError(f"{path}:{line_no}: expected at least 16 columns, found {len(row)}")
            faces = []
            for i in range(3):
                url, x0, x1, y0, y1 = row[5 * i:5 * i + 5]
                faces.append({"url": url, "box": tuple(float(v) for v in (x0, x1, y0, y1))})
            kind = row[15]
            if kind not in TRIPLET_TYPES:
                raise ValueError(f"{path}:{line_no}: unknown triplet type '{kind}'")
            rest = row[16:]
            annotations = [(rest[i], int(rest[i + 1])) for i in range(0, len(rest) - 1, 2)]
            rows.append({"faces": faces, "type": kind, "annotations": annotations})
    return rows


def strong_agreement(annotations: list[tuple[str, int]]) -> bool:
    """The paper's 'strong' triplets: at least two thirds of the raters name the same odd one."""
    counts = np.bincount([a for _, a in annotations], minlength=4)
    return bool(counts.max() * 3 >= 2 * counts.sum())


VALID_TRIPLET_SEED = 2019


VALID_TRIPLETS = 6000


def validation_triplets(valid: LabelledFaces, seed: int = VALID_TRIPLET_SEED, count: int = VALID_TRIPLETS):
    return ferplus_vote_triplets(valid, count, seed=seed)
