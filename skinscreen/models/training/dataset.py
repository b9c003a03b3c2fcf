"""Labelled image folders: listing, near-duplicate groups and the grouped, stratified split.

A data folder holds `benign/` and `malignant/` (label 0 and 1). Near-duplicates (the same
lesion re-encoded, or consecutive shots) are found on 32x32 grayscale thumbnails with the
rule of the dataset's SOURCE.md: Pearson r > 0.99 and mean absolute difference < 4/255.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from skinscreen.checksum import sha256_file
from skinscreen.models.labelled import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from skinscreen.models.labelled import LabelledFiles as LabelledFiles
from skinscreen.models.labelled import list_labelled as list_labelled

NEAR_DUP_R = 0.99
NEAR_DUP_MAD = 4.0 / 255.0


def fingerprints(paths: Sequence[Path]) -> np.ndarray:
    """32x32 grayscale thumbnails in [0, 1], one row of 1024 per path."""
    rows = np.empty((len(paths), 1024), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            rows[i] = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BILINEAR)).ravel() / 255.0
    return rows


def near_duplicate_pairs(a: np.ndarray, b: np.ndarray, *, same: bool = False) -> list[tuple[int, int]]:
    """Index pairs (i in a, j in b) that look like the same lesion; `same` skips i >= j."""

    def standardise(x: np.ndarray) -> np.ndarray:
        centred = x - x.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(centred, axis=1, keepdims=True)
        return np.asarray(centred / np.maximum(norm, 1e-8))

    corr = standardise(a) @ standardise(b).T
    if same:
        corr = np.triu(corr, k=1)
    pairs = []
    for i, j in zip(*np.nonzero(corr > NEAR_DUP_R), strict=True):
        if np.abs(a[i] - b[j]).mean() < NEAR_DUP_MAD:
            pairs.append((int(i), int(j)))
    return pairs


def duplicate_groups(paths: Sequence[Path]) -> np.ndarray:
    """A group id per path: exact and near-duplicates share one (union-find)."""
    parent = list(range(len(paths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first_by_hash: dict[str, int] = {}
    for i, path in enumerate(paths):
        digest = sha256_file(path)
        if digest in first_by_hash:
            union(i, first_by_hash[digest])
        else:
            first_by_hash[digest] = i
    prints = fingerprints(paths)
    for i, j in near_duplicate_pairs(prints, prints, same=True):
        union(i, j)
    return np.asarray([find(i) for i in range(len(paths))], dtype=np.int64)


def grouped_split(
    labels: np.ndarray, groups: np.ndarray, *, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: stratified by label, whole groups on one side only."""
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in np.unique(labels):
        # A group takes the label of its first member; the dataset has no conflicting labels.
        label_groups = np.unique(groups[labels == label])
        rng.shuffle(label_groups)
        target = round(val_fraction * int((labels == label).sum()))
        taken = 0
        for group in label_groups:
            members = np.nonzero((groups == group) & (labels == label))[0].tolist()
            if taken < target:
                val_idx += members
                taken += len(members)
            else:
                train_idx += members
    return np.sort(np.asarray(train_idx)), np.sort(np.asarray(val_idx))


def load_pixels(paths: Sequence[Path], *, size: int) -> np.ndarray:
    """Decode paths into one uint8 array (N, size, size, 3) with the scoring path's reader."""
    from skinscreen.models.preprocess import to_model_input

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = to_model_input(path, size=size)
    return out
