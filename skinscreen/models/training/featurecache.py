"""Cached backbone features: compare training recipes in minutes instead of hours.

A candidate recipe that fine-tunes the whole network costs about 45 minutes on two cores, so
recipes could only be compared one seed at a time. Most of that time is spent recomputing the
frozen ImageNet backbone's activations. Here they are computed once per hospital, for one or
more copies of every image, and kept in float16 on disk:

- `pooled`: the backbone's global-average-pooled output (N copies x images x 1280), what a head
  trains on;
- `maps` (optional): the activations after block 15 (7x7x160 at 224 px), from which block 16,
  the last 1x1 convolution and the head can be fine-tuned without touching the lower blocks.

Copy 0 is the image as scored. The geometry copy applies `centre_squash` to a full-frame image:
the HAM10000 sets are centre crops (short side resized, sides cut off), the other sets full-frame
squashes, and a lesion there looks 1.34 times wider. An "augment" copy (only when asked for)
passes through the recipe's random flips, rotation, zoom and shift. The cache is a training aid only:
never a shipped file, never in the repository.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinscreen.models.training import dataset
from skinscreen.models.training.network import DEFAULT, Recipe, augmenter

logger = logging.getLogger(__name__)

MAP_LAYER = "block_15_add"
# Centre crop of a 4:3 frame to its middle 3:4 of the width: a full-frame 224x224 squash of a
# 600x450 photo keeps 600 columns, a short-side-224 centre crop 450 of them.
CROP_WIDTH = 0.75
# What the copies are: "plain" (the image as scored), "augment" (the recipe's random geometry),
# "geometry" (centre_squash alone). A centre-cropped source needs no geometry copy: it already
# has the geometry the copy imitates. Every augmented copy costs one more backbone pass per
# image, the whole price of the cache on shared cores, so the default keeps none.
COPY_KINDS = ("plain", "geometry")
CROPPED_KINDS = ("plain",)

# pixels (float32 0..255) -> pooled features and, when cached, the block-15 maps
Extract = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
SPLITS = {"train", "test", "validation", "val"}
"""Folder names of a split inside a hospital's folder (`skin-cancer-mvb/train`)."""


def source_name(folder: Path) -> str:
    """A hospital's name from its folder: the parent's name for a split (`skin-cancer-mvb/train`)."""
    folder = folder.resolve()
    return folder.parent.name if folder.name in SPLITS else folder.name


def centre_squash(batch: np.ndarray, *, width: float = CROP_WIDTH) -> np.ndarray:
    """Keep the middle `width` of each image's columns and stretch them back to the full width:
    a full-frame squash made to look like a short-side resize and centre crop."""
    from PIL import Image

    n, h, w, _ = batch.shape
    keep = round(w * width)
    left = (w - keep) // 2
    out = np.empty_like(batch)
    for i in range(n):
        crop = Image.fromarray(batch[i, :, left : left + keep])
        out[i] = np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR))
    return out


def backbone(*, backbone_weights: Path | None, size: int = 224, alpha: float = 1.0) -> Any:
    """MobileNetV2 without its top: ImageNet weights from `backbone_weights`, else random (no download)."""
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        alpha=alpha,
        include_top=False,
        weights=str(backbone_weights) if backbone_weights else None,
    )


def build_extractor(
    *, backbone_weights: Path | None, size: int = 224, alpha: float = 1.0, maps: bool = True
) -> Any:
    """The frozen ImageNet MobileNetV2 over 0..255 pixels -> [pooled (1280), block-15 maps]."""
    import keras

    base = backbone(backbone_weights=backbone_weights, size=size, alpha=alpha)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    inner = keras.Model(base.input, [base.get_layer(MAP_LAYER).output, base.output])
    block15, top = inner(x, training=False)
    outputs = [keras.layers.GlobalAveragePooling2D()(top)]
    if maps:
        outputs.append(block15)
    return keras.Model(inputs, outputs, name="feature_extractor")


def keras_extract(model: Any) -> Extract:
    """`build_extractor`'s model, run by Keras."""

    def extract(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        result = model.predict_on_batch(pixels)
        if isinstance(result, list | tuple):
            return np.asarray(result[0]), (np.asarray(result[1]) if len(result) > 1 else None)
        return np.asarray(result), None

    return extract


def onnx_extract(model: Any, *, path: Path, threads: int = 2) -> Extract:
    """`build_extractor`'s model exported to `path` and run by ONNX Runtime (about 3 x Keras's
    throughput on this CPU, which is what makes the cache minutes rather than an hour)."""
    import onnxruntime as ort

    size = int(model.inputs[0].shape[1])
    model(np.zeros((1, size, size, 3), "float32"))  # Keras exports only a model that has been called
    model.export(str(path), format="onnx", verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def extract(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        result = session.run(None, {name: pixels.astype("float32")})
        return np.asarray(result[0]), (np.asarray(result[1]) if len(result) > 1 else None)

    return extract


@dataclass(frozen=True)
class CachedSource:
    """One hospital's cached features: copies x images x features, labels, names and diagnoses."""

    name: str
    pooled: np.ndarray  # (copies, n, d) float16
    labels: np.ndarray  # (n,) int64, 1 = malignant
    paths: list[str]  # relative to the source folder
    full_frame: bool
    copy_kinds: list[str]
    maps: np.ndarray | None = None  # (copies, n, h, w, c) float16


def cache_source(
    folder: Path,
    *,
    name: str,
    extract: Extract,
    full_frame: bool,
    kinds: tuple[str, ...] = (),
    recipe: Recipe = DEFAULT,
    seed: int = 0,
    batch_size: int = 32,
    size: int = 224,
) -> CachedSource:
    """Features of every image of `folder/{benign,malignant}`, one row per copy in `kinds`
    (default: COPY_KINDS for a full-frame source, CROPPED_KINDS for a centre-cropped one)."""
    files = dataset.list_labelled(folder)
    kinds = kinds or (COPY_KINDS if full_frame else CROPPED_KINDS)
    aug = augmenter(recipe, seed=seed)  # one augmenter: its random state moves on with every call
    pooled: list[list[np.ndarray]] = [[] for _ in kinds]
    maps: list[list[np.ndarray]] = [[] for _ in kinds]
    started = time.monotonic()
    for start in range(0, len(files.paths), batch_size):
        pixels = dataset.load_pixels(files.paths[start : start + batch_size], size=size)
        for k, kind in enumerate(kinds):
            x = centre_squash(pixels) if kind == "geometry" else pixels
            x = x.astype("float32")
            if kind == "augment":
                x = np.asarray(aug(x, training=True), dtype="float32")
            feats, fmaps = extract(x)
            pooled[k].append(np.asarray(feats, dtype=np.float16))
            if fmaps is not None:
                maps[k].append(np.asarray(fmaps, dtype=np.float16))
        if (start // batch_size) % 10 == 9:
            done = start + len(pixels)
            per_100 = 100 * (time.monotonic() - started) / done
            logger.info("%s: %d/%d images, %.1f s per 100", name, done, len(files.paths), per_100)
    return CachedSource(
        name=name,
        pooled=np.stack([np.concatenate(p) for p in pooled]),
        labels=files.labels,
        paths=[p.relative_to(folder).as_posix() for p in files.paths],
        full_frame=full_frame,
        copy_kinds=list(kinds),
        maps=np.stack([np.concatenate(m) for m in maps]) if all(maps) else None,
    )


def save_source(source: CachedSource, *, out: Path) -> Path:
    """`out/NAME.npz` (features) and `out/NAME.json` (what the copies are, and the file names)."""
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"pooled": source.pooled, "labels": source.labels}
    if source.maps is not None:
        arrays["maps"] = source.maps
    path = out / f"{source.name}.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    meta = {"paths": source.paths, "full_frame": source.full_frame, "copy_kinds": source.copy_kinds}
    (out / f"{source.name}.json").write_text(json.dumps(meta))
    return path


def load_source(cache: Path, name: str, *, maps: bool = False) -> CachedSource:
    """A source written by `save_source`; `maps` loads the block-15 activations too (large)."""
    meta = json.loads((cache / f"{name}.json").read_text())
    with np.load(cache / f"{name}.npz") as npz:
        return CachedSource(
            name=name,
            pooled=npz["pooled"],
            labels=npz["labels"],
            paths=meta["paths"],
            full_frame=meta["full_frame"],
            copy_kinds=meta["copy_kinds"],
            maps=npz["maps"] if maps and "maps" in npz.files else None,
        )


def build_cache(
    folders: dict[str, Path],
    *,
    out: Path,
    backbone_weights: Path | None,
    centre_cropped: set[str],
    size: int = 224,
    alpha: float = 1.0,
    maps: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Cache every folder (by source name) into `out`; returns the seconds each one took."""
    out.mkdir(parents=True, exist_ok=True)
    model = build_extractor(backbone_weights=backbone_weights, size=size, alpha=alpha, maps=maps)
    extract = onnx_extract(model, path=out / "extractor.onnx")
    seconds: dict[str, float] = {}
    for name, folder in folders.items():
        started = time.monotonic()
        source = cache_source(
            folder,
            name=name,
            extract=extract,
            full_frame=name not in centre_cropped,
            seed=seed,
            size=size,
        )
        save_source(source, out=out)
        seconds[name] = round(time.monotonic() - started, 1)
        logger.info(
            "cached %s: %d images x %d copies in %.0f s",
            name,
            len(source.labels),
            len(source.copy_kinds),
            seconds[name],
        )
    return seconds
