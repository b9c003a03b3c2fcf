"""A case's image and its Grad-CAM overlay as PNG: from the scored pixels, by the model that scored them.

- The map of a case comes from the model version stored with its prediction, never from whatever
  model is in force today: `HeatmapStore` knows every model it was given (`MODEL`, `HEATMAP_MODELS`
  and the shipped ones) by version, finds the installed ones in the model registry, and refuses
  (`ModelUnavailableError`) a version it does not have rather than draw another model's map.
- Grad-CAM sees what the score saw: `preprocess.seen_pixels`, the one function scoring and the
  Secondary Capture use too (decoded with the model's input size as draft size, then resized).
- A case view decodes its file once: `CaseImages` keeps recent decodes by (sha256, draft size), so the
  image, the overlay and the map share one. Only a JPEG whose map is not cached yet is decoded a
  second time, at the scoring draft size, because that is what its score was computed from.
- Memory stays bounded whatever the file: one file is decoded at a time (`DECODE_SLOTS`; a PNG or
  TIFF cannot be decoded at a reduced size, so an 81-megapixel one takes about 0.25 GB per copy while
  it is turned into pixels), decodes are kept up to `DECODED_BYTES_KEPT` in all and only when
  under `LARGEST_KEPT` each, and what is drawn from a larger one (the rendition at a size, the model's
  input) is kept instead, small. Requests waiting for the same file find those when their turn comes.
- Maps are cached as 8-bit PNG files under `<heatmap dir>/<model version>/<sha256>.png`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import logging
import os
import re
import sys
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

DECODED_BYTES_KEPT = 192 * 2**20
"""Decoded images kept in memory, in all: enough for the cases a few reviewers have open at once."""
LARGEST_KEPT = 48 * 2**20
"""A decode larger than this (16 megapixels) is not kept; what was drawn from it is."""
DRAWN_KEPT = 32
"""Renditions and model inputs (at most 2048 px a side: 12 MB each) kept for decodes not kept."""
DECODE_SLOTS = 1
"""Files decoded at once by one server process."""


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
        self._drawn: OrderedDict[tuple[str, str, int], npt.NDArray[np.uint8]] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(DECODE_SLOTS)
        self.decodes = 0
        """Files decoded so far (tests count them)."""

    def _kept(self, sha256: str, draft_size: int) -> LoadedImage | None:
        with self._lock:
            for key in ((sha256, draft_size), (sha256, None)):
                if key in self._decoded:
                    self._decoded.move_to_end(key)
                    return self._decoded[key]
        return None

    def _decode(self, case: CaseFile, data: bytes, *, draft_size: int) -> LoadedImage:
        loaded = decode_image(io.BytesIO(data), draft_size=draft_size)
        with self._lock:
            self.decodes += 1
            if loaded.pixels.nbytes <= LARGEST_KEPT:
                # Only JPEG decoding depends on the draft size; any other format serves every size.
                self._decoded[(case.sha256, draft_size if loaded.format == "jpeg" else None)] = loaded
                while sum(d.pixels.nbytes for d in self._decoded.values()) > DECODED_BYTES_KEPT:
                    self._decoded.popitem(last=False)
        return loaded

    def _draw(
        self, case: CaseFile, *, kind: str, size: int, make: Callable[[LoadedImage], npt.NDArray[np.uint8]]
    ) -> npt.NDArray[np.uint8]:
        """`make(decoded file)`, kept by (sha256, kind, size) when the decode itself was too large to keep.

        The file is read and checked against the scored sha256 on every request, kept or not.
        """
        key = (case.sha256, kind, size)
        with self._lock:
            drawn = self._drawn.get(key)
            if drawn is not None:
                self._drawn.move_to_end(key)
        if drawn is not None:
            self._read(case)  # a replaced file raises here, whatever is kept
            return drawn
        kept = self._kept(case.sha256, size)
        if kept is not None:
            self._read(case)
            return make(kept)
        with self._slots:
            data = self._read(case)
            with self._lock:
                if key in self._drawn:  # drawn by the request this one waited for
                    return self._drawn[key]
            kept = self._kept(case.sha256, size)
            loaded = kept if kept is not None else self._decode(case, data, draft_size=size)
            del data
            drawn = make(loaded)
            large = loaded.pixels.nbytes > LARGEST_KEPT
            if large:
                with self._lock:
                    self._drawn[key] = drawn
                    while len(self._drawn) > DRAWN_KEPT:
                        self._drawn.popitem(last=False)
            del loaded
            if large:
                _give_back_memory()
        return drawn

    def display(self, case: CaseFile, *, max_side: int) -> npt.NDArray[np.uint8]:
        """The image as RGB, at most `max_side` pixels a side."""
        return self._draw(
            case, kind="display", size=max_side, make=lambda d: fit(d.pixels, max_side=max_side)
        )

    def model_input(self, case: CaseFile, size: int) -> npt.NDArray[np.uint8]:
        """The pixels a scorer with this input size saw: decoded with draft size `size`, then resized."""
        return self._draw(
            case, kind="input", size=size, make=lambda d: seen_pixels(lambda _draft: d, size=size)[1]
        )

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


def _give_back_memory() -> None:
    """Return freed heap memory to the system after a large decode.

    glibc keeps the freed blocks of a decode made in a worker thread in that thread's arena (a large
    free also raises its mmap threshold), so an 81-megapixel PNG would leave the server 0.4 GB larger
    for good; `malloc_trim` hands them back. Elsewhere (musl, macOS) this does nothing.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _load_libc()


def _read_map(path: Path) -> Heatmap:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32) / 255.0
