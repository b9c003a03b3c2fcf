"""Score files: decode in a thread pool (Pillow and the codecs release the GIL), one model call a batch.

This is the one scoring path: `predict`, `evaluate`, the embedded `run` and the Celery
workers all come through `score_files`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinscreen.errors import UnreadableImageError
from skinscreen.images import DicomInfo, read_image
from skinscreen.models.classifier import Scorer
from skinscreen.models.preprocess import resize_pixels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileScore:
    """A file's probability, or the reason it has none."""

    path: Path
    probability: float | None
    flagged: bool | None
    reason: str | None = None
    format: str | None = None
    dicom: DicomInfo | None = None


@dataclass(frozen=True)
class Decoded:
    path: Path
    pixels: np.ndarray | None
    reason: str | None
    format: str | None = None
    dicom: DicomInfo | None = None


def decode(path: Path, *, size: int) -> Decoded:
    """Read and resize one file; any failure becomes a reason, never an exception."""
    try:
        image = read_image(path, draft_size=size)
        return Decoded(path, resize_pixels(image.pixels, size=size), None, image.format, image.dicom)
    except UnreadableImageError as exc:
        return Decoded(path, None, exc.reason)
    except Exception as exc:  # a decoder bug must not sink the batch; the type says enough
        logger.exception("unexpected error decoding %s", path.name)
        return Decoded(path, None, f"unexpected error while reading: {type(exc).__name__}")


def score_decoded(decoded: Sequence[Decoded], *, classifier: Scorer) -> list[FileScore]:
    """One model call for the decodable files of a batch."""
    good = [d for d in decoded if d.pixels is not None]
    pixels = [d.pixels for d in good if d.pixels is not None]
    probs = classifier.predict(np.stack(pixels)) if pixels else np.zeros(0)
    by_path = {id(d): float(p) for d, p in zip(good, probs, strict=True)}
    out = []
    for d in decoded:
        prob = by_path.get(id(d))
        flagged = None if prob is None else prob >= classifier.threshold
        out.append(FileScore(d.path, prob, flagged, d.reason, d.format, d.dicom))
    return out


def iter_batches(
    paths: Sequence[Path], *, classifier: Scorer, batch_size: int, pool: Executor
) -> Iterator[list[FileScore]]:
    """Yield scored batches; the next batch decodes while the current one runs through the model."""
    size = classifier.input_size
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    pending = [pool.submit(decode, p, size=size) for p in chunks[0]] if chunks else []
    for index in range(len(chunks)):
        decoded = [f.result() for f in pending]
        if index + 1 < len(chunks):
            pending = [pool.submit(decode, p, size=size) for p in chunks[index + 1]]
        yield score_decoded(decoded, classifier=classifier)


def score_files(
    paths: Sequence[Path],
    *,
    classifier: Scorer,
    batch_size: int = 32,
    decode_threads: int = 2,
    on_batch: Callable[[list[FileScore]], None] | None = None,
) -> list[FileScore]:
    """Score every path, in order; unreadable files get a reason instead of a probability."""
    results: list[FileScore] = []
    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode") as pool:
        for batch in iter_batches(paths, classifier=classifier, batch_size=batch_size, pool=pool):
            results += batch
            if on_batch:
                on_batch(batch)
    return results
