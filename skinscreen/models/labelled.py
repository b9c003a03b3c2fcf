"""Labelled image folders: `benign/` and `malignant/` (label 0 and 1) under one folder.

Training, evaluation and a site's calibration sample all read this layout; it lives beside the
serving code so that calibration (sites/) imports no training code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinscreen.errors import DatasetError

CLASS_NAMES = ("benign", "malignant")  # by label: 0 benign, 1 malignant (the data folders' names)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".dcm"}


@dataclass(frozen=True)
class LabelledFiles:
    """Paths and their labels (1 = malignant), in a stable order."""

    paths: list[Path]
    labels: np.ndarray


def list_labelled(folder: Path) -> LabelledFiles:
    """List `folder/benign` and `folder/malignant`, sorted by name."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_NAMES):
        sub = folder / name
        if not sub.is_dir():
            raise DatasetError(f"{folder} has no {name}/ folder; expected benign/ and malignant/")
        found = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise DatasetError(f"{folder} holds no images under benign/ or malignant/")
    return LabelledFiles(paths=paths, labels=np.asarray(labels, dtype=np.int64))
