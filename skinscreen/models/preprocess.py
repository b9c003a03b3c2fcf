"""The preprocessing contract shared by training, `predict` and the workers.

pixels (any size, RGB uint8) -> bilinear resize to size x size -> float32 in 0..255.
Scaling to the backbone's range happens inside the model, so every runtime gets the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from skinscreen.images import LoadedImage, read_image


def resize_pixels(pixels: np.ndarray, *, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 array to (size, size, 3) uint8."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    im = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def seen_pixels(decode: Callable[[int], LoadedImage], *, size: int) -> tuple[LoadedImage, np.ndarray]:
    """The pixels a scorer with input `size` sees: the file decoded with draft size `size`, then resized.

    `decode(draft_size)` decodes the file (`read_image`, or the review server's checked bytes); JPEG
    decoding may downscale by a power of two, never below `size`. Scoring, the reviewers' heatmaps and
    the Secondary Capture all come through here, so a map is drawn over exactly what was scored.
    Returns the decoded image (its format and DICOM fields) and the (size, size, 3) uint8 input.
    """
    image = decode(size)
    return image, resize_pixels(image.pixels, size=size)


def read_model_input(path: Path, *, size: int) -> tuple[LoadedImage, np.ndarray]:
    """`seen_pixels` of a file on disk."""
    return seen_pixels(lambda draft: read_image(path, draft_size=draft), size=size)


def to_model_input(path: Path, *, size: int) -> np.ndarray:
    """Read a file and return its (size, size, 3) uint8 model input."""
    return read_model_input(path, size=size)[1]


TTA_MODES = ("none", "flip4", "dihedral8")


def view_list(batch: np.ndarray, mode: str) -> list[np.ndarray]:
    """The test-time views of a (N, s, s, 3) batch, as numpy views (nothing is copied).

    Lesions have no up, down, left or right, so the model's average over flips (and transposes,
    for `dihedral8`) is a steadier score than any single view.
    """
    if mode == "none":
        return [batch]
    views = [batch, batch[:, :, ::-1], batch[:, ::-1], batch[:, ::-1, ::-1]]
    if mode == "dihedral8":
        t = batch.transpose(0, 2, 1, 3)
        views += [t, t[:, :, ::-1], t[:, ::-1], t[:, ::-1, ::-1]]
    elif mode != "flip4":
        raise ValueError(f"unknown test-time augmentation {mode!r}; expected one of {TTA_MODES}")
    return views


def tta_views(batch: np.ndarray, mode: str) -> np.ndarray:
    """The test-time views stacked: (k*N, s, s, 3), view-major."""
    return np.ascontiguousarray(np.concatenate(view_list(batch, mode)))


def average_views(probs: np.ndarray, *, n: int) -> np.ndarray:
    """Mean over the views that `tta_views` stacked for n images."""
    views = np.asarray(probs, dtype=np.float64).reshape(-1, n)
    return np.asarray(views.mean(axis=0))
