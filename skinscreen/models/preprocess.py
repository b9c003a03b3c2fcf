"""The preprocessing contract shared by training, `predict` and the workers.

pixels (any size, RGB uint8) -> bilinear resize to size x size -> float32 in 0..255.
Scaling to the backbone's range happens inside the model, so every runtime gets the same input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from skinscreen.images import read_image


def resize_pixels(pixels: np.ndarray, *, size: int) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 array to (size, size, 3) uint8."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    im = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def to_model_input(path: Path, *, size: int) -> np.ndarray:
    """Read a file and return its (size, size, 3) uint8 model input."""
    return resize_pixels(read_image(path, draft_size=size).pixels, size=size)
