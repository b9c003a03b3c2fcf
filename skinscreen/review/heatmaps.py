"""A case's image and its Grad-CAM overlay as PNG: from the scored pixels, by the model that scored them.

- The map of a case comes from the model version stored with its prediction, never from whatever
  model is in force today: `HeatmapStore` knows every model it was given (`MODEL`, `HEATMAP_MODELS`
  and the shipped ones) by version, finds the installed ones in the model registry, and refuses
  (`ModelUnavailableError`) a version it does not have rather than draw another model's map.
- Grad-CAM sees what the score saw: `preprocess.seen_pixels`, the one function scoring and the
  Secondary Capture use too (decoded with the model's input size as draft size, then resized).
- A case view decodes its file once: `CaseImages` keeps the last few decodes by (sha256, draft size),
  so the image, the overlay and the map share one. Only a JPEG whose map is not cached yet is decoded a
  second time, at the scoring draft size, because that is what its score was computed from.
- Maps are cached as 8-bit PNG files under `<heatmap dir>/<model version>/<sha256>.png`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from skinscreen.db.cases import CaseFile
from skinscreen.errors import ModelError, ModelUnavailableError
from skinscreen.images import LoadedImage, decode_image
from skinscreen.models.gradcam import GradCam, Heatmap, load_gradcam, overlay
from skinscreen.models.preprocess import seen_pixels
from skinscreen.models.registry import ModelCard, find_model, read_card, resolve_model_dir
from skinscreen.models.registry import shipped_models as registry_shipped

logger = logging.getLogger(__name__)

DECODES_KEPT = 8
"""Decoded images kept in memory: enough for the cases a few reviewers have open at once."""


def _png(pixels: npt.NDArray[np.uint8]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=False)
    return out.getvalue()


def fit(pixels: npt.NDArray[np.uint8], *, max_side: int) -> npt.NDArray[np.uint8]:
    """Downscale so that the longer side is at most `max_side` (never upscale)."""
    h, w = pixels.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return pixels
    im = Image.fromarray(pixels).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
    )
    return np.asarray(im, dtype=np.uint8)


def shipped_models() -> list[Path]:
    """Every model directory shipped inside the package."""
    return [m.card.path for m in registry_shipped()]


class HeatmapStore:
    """Grad-CAM maps by model version, computed once per (version, image content) and kept as PNG files.

    A Keras model is loaded on the first map asked of it (importing TensorFlow takes seconds), and one
    lock serialises the computations: a 2-core server gains nothing from running two at once.
    """

    def __init__(
        self,
        *,
        folder: Path,
        models: Iterable[str | Path],
        loader: Callable[[Path], GradCam] = load_gradcam,
        models_folder: Path | None = None,
    ) -> None:
        self.folder = folder
        self.cards: dict[str, ModelCard] = {}
        for model in models:
            card = read_card(resolve_model_dir(model))
            self.cards.setdefault(card.version, card)
        self._models_folder = models_folder  # installed models (`models add`), looked up by version
        self._loader = loader
        self._gradcams: dict[str, GradCam] = {}
        self._lock = threading.Lock()

    def card(self, version: str) -> ModelCard:
        """The card of a model version this server can explain; ModelUnavailableError otherwise."""
        found = self.cards.get(version)
        if found is None and self._models_folder is not None:
            try:
                card = read_card(find_model(version, self._models_folder))
            except ModelError:
                card = None
            if card is not None and card.version == version:
                found = self.cards.setdefault(version, card)
        if found is None:
            raise ModelUnavailableError(version)
        return found

    def knows(self, version: str) -> bool:
        """Whether this server can explain the scores of `version`."""
        try:
            self.card(version)
        except ModelUnavailableError:
            return False
        return True

    def cached(self, *, version: str, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256 digest")
        return self.folder / re.sub(r"[^A-Za-z0-9._-]", "_", version) / f"{sha256}.png"

    def heatmap(
        self, *, version: str, sha256: str, model_input: Callable[[int], npt.NDArray[np.uint8]]
    ) -> Heatmap:
        """The map in 0..1 at the model's input size, from the cache or computed now.

        `model_input(size)` gives the file's pixels as decoded for scoring at that input size.
        """
        card = self.card(version)
        cached = self.cached(version=version, sha256=sha256)
        if cached.exists():
            return _read_map(cached)
        with self._lock:
            if cached.exists():  # another request made it while this one waited
                return _read_map(cached)
            gradcam = self._gradcams.get(version)
            if gradcam is None:
                gradcam = self._gradcams[version] = self._loader(card.path)
            if gradcam.input_size != card.input_size:
                raise ModelError(
                    f"model {version}: Keras input {gradcam.input_size} != card {card.input_size}"
                )
            heat = gradcam.explain_pixels(model_input(card.input_size), tta=card.tta)
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            Image.fromarray(np.asarray(np.rint(heat * 255), dtype=np.uint8)).save(partial, format="PNG")
            os.replace(partial, cached)  # readers never see half a file
        logger.info("heatmap made for %s by %s", sha256[:12], version)
        return heat


class CaseImages:
    """Reads a case's file (through `read`, which checks it), decodes it once, draws image and overlay."""

    def __init__(self, *, heatmaps: HeatmapStore, read: Callable[[CaseFile], bytes]) -> None:
        self.heatmaps = heatmaps
        self._read = read
        self._decoded: OrderedDict[tuple[str, int | None], LoadedImage] = OrderedDict()
        self._lock = threading.Lock()
        self.decodes = 0
        """Files decoded so far (tests count them)."""

    def _decode(self, case: CaseFile, *, draft_size: int) -> LoadedImage:
        data = self._read(case)  # checked against the scored sha256 on every request
        with self._lock:
            keys: tuple[tuple[str, int | None], ...] = ((case.sha256, draft_size), (case.sha256, None))
            for key in keys:
                if key in self._decoded:
                    self._decoded.move_to_end(key)
                    return self._decoded[key]
        loaded = decode_image(io.BytesIO(data), draft_size=draft_size)
        # Only JPEG decoding depends on the draft size; any other format serves every size.
        key = (case.sha256, draft_size if loaded.format == "jpeg" else None)
        with self._lock:
            self.decodes += 1
            self._decoded[key] = loaded
            while len(self._decoded) > DECODES_KEPT:
                self._decoded.popitem(last=False)
        return loaded

    def display(self, case: CaseFile, *, max_side: int) -> npt.NDArray[np.uint8]:
        """The image as RGB, at most `max_side` pixels a side."""
        return fit(self._decode(case, draft_size=max_side).pixels, max_side=max_side)

    def model_input(self, case: CaseFile, size: int) -> npt.NDArray[np.uint8]:
        """The pixels a scorer with this input size saw: decoded with draft size `size`, then resized."""
        return seen_pixels(lambda draft: self._decode(case, draft_size=draft), size=size)[1]

    def image_png(self, case: CaseFile, *, max_side: int) -> bytes:
        return _png(self.display(case, max_side=max_side))

    def overlay_png(self, case: CaseFile, *, max_side: int) -> tuple[bytes, str]:
        """The image with the map of the model version that scored it; (PNG, that version)."""
        version = case.model_version
        if version is None:
            raise ValueError("an unscored case has no heatmap")
        self.heatmaps.card(version)  # refuse before reading or decoding anything
        heat = self.heatmaps.heatmap(
            version=version, sha256=case.sha256, model_input=lambda size: self.model_input(case, size)
        )
        return _png(overlay(self.display(case, max_side=max_side), heat)), version


def _read_map(path: Path) -> Heatmap:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / 255.0
