"""Labelled face sets: FER+ vote files and folder-per-class collections (CK+48, AffectNet)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fecsearch.faces.images import IMAGE_SUFFIXES
from fecsearch.models.config import EMOTIONS

# Folder names used by CK+ and friends, mapped onto the eight FER+/AffectNet classes.
FOLDER_ALIASES = {"happy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
                  "sadness": "sadness", "anger": "anger", "disgust": "disgust", "fear": "fear",
                  "contempt": "contempt", "surprise": "surprise", "neutral": "neutral",
                  "happiness": "happiness"}


@dataclass
class LabelledFaces:
    paths: list[Path]
    labels: np.ndarray  # int index into EMOTIONS
    votes: np.ndarray | None = None  # (n, 8) vote distributions, FER+ only

    def __len__(self) -> int:
        return len(self.paths)


def read_ferplus(folder: str | Path, min_votes: int = 6) -> LabelledFaces:
    """FER+ faces kept by the rule of shared/data/README.md: >= min_votes emotion votes, unique max."""
    folder = Path(folder)
    paths, labels, votes = [], [], []
    with open(folder / "label.csv", newline="") as f:
        for row in csv.reader(f):
            # label.csv: file name, box, the votes for the eight EMOTIONS in their order, then
            # "unknown" and "not a face" (never counted).
            counts = np.array([float(v) for v in row[2:2 + len(EMOTIONS)]])
            total = counts.sum()
            if total < min_votes:
                continue
            top = counts.max()
            if (counts == top).sum() != 1:
                continue
            paths.append(folder / row[0])
            labels.append(int(counts.argmax()))
            votes.append(counts / total)
    return LabelledFaces(paths, np.array(labels, dtype=np.int64), np.array(votes, dtype=np.float32))


def read_class_folders(folder: str | Path) -> LabelledFaces:
    """Images in <folder>/<class>/..., class names mapped to the eight emotions."""
    folder = Path(folder)
    paths, labels = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = FOLDER_ALIASES.get(sub.name.lower())
        if name is None:
            raise ValueError(f"{sub}: folder name '{sub.name}' is not one of the emotions {', '.join(EMOTIONS)}")
        for p in sorted(sub.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(EMOTIONS.index(name))
    return LabelledFaces(paths, np.array(labels, dtype=np.int64))


def read_labelled(folder: str | Path) -> LabelledFaces:
    folder = Path(folder)
    return read_ferplus(folder) if (folder / "label.csv").exists() else read_class_folders(folder)
