"""Images and Grad-CAM overlays as PNG for the review page; heatmaps cached as PNG files on first view."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from skinscreen.images import read_image
from skinscreen.models.classifier import read_card, resolve_model_dir
from skinscreen.models.gradcam import GradCam, Heatmap, load_gradcam, overlay

logger = logging.getLogger(__name__)


def _png(pixels: npt.NDArray[np.uint8]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=False)
    return out.getvalue()


def _fit(pixels: npt.NDArray[np.uint8], *, max_side: int) -> npt.NDArray[np.uint8]:
    """Downscale so that the longer side is at most `max_side` (never upscale)."""
    h, w = pixels.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return pixels
    im = Image.fromarray(pixels).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
    )
    return np.asarray(im, dtype=np.uint8)


def read_pixels(path: str, *, max_side: int) -> npt.NDArray[np.uint8]:
    """An image file (JPEG, PNG, TIFF, DICOM...) as RGB, at most `max_side` pixels a side."""
    return _fit(read_image(Path(path), draft_size=max_side).pixels, max_side=max_side)


def image_png(path: str, *, max_side: int) -> bytes:
    return _png(read_pixels(path, max_side=max_side))


class HeatmapStore:
    """Grad-CAM maps of one model, computed once per image content and kept as 8-bit PNG files.

    The Keras model is loaded on the first map asked for (importing TensorFlow takes seconds), and
    one lock serialises the computations: a 2-core server gains nothing from running two at once.
    """

    def __init__(
        self, *, folder: Path, model: str | Path, loader: Callable[[Path], GradCam] = load_gradcam
    ) -> None:
        self.model_dir = resolve_model_dir(model)
        card = read_card(self.model_dir)
        self.version = card.version
        self.tta = card.tta
        self.folder = folder / re.sub(r"[^A-Za-z0-9._-]", "_", card.version)
        self._loader = loader
        self._gradcam: GradCam | None = None
        self._lock = threading.Lock()

    def _cached(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256 digest")
        return self.folder / f"{sha256}.png"

    def heatmap(self, *, path: str, sha256: str) -> Heatmap:
        """The image's map in 0..1 at the model's input size, from the cache or computed now."""
        cached = self._cached(sha256)
        if cached.exists():
            return _read_map(cached)
        with self._lock:
            if cached.exists():  # another request made it while this one waited
                return _read_map(cached)
            if self._gradcam is None:
                self._gradcam = self._loader(self.model_dir)
            pixels = read_image(Path(path)).pixels
            heat = self._gradcam.explain_pixels(pixels, tta=self.tta)
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            Image.fromarray(np.asarray(np.rint(heat * 255), dtype=np.uint8)).save(partial, format="PNG")
            os.replace(partial, cached)  # readers never see half a file
        logger.info("heatmap made for %s", sha256[:12])
        return heat

    def overlay_png(self, *, path: str, sha256: str, max_side: int) -> bytes:
        heat = self.heatmap(path=path, sha256=sha256)
        return _png(overlay(read_pixels(path, max_side=max_side), heat))


def _read_map(path: Path) -> Heatmap:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / 255.0
