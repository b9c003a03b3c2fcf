"""Screen files: decode them, score them a batch per model call, flag them. The one scoring path.

`predict`, `evaluate`, the embedded `run`, the Celery workers and the bench all come through
`score_files` (or `score_decoded`, for images already decoded), so they give the same
probabilities and flags for the same files. Decoding runs in a thread pool (Pillow and the codecs
release the GIL); the next batch decodes while the current one is in the model. A flag is set here
only, through `skinscreen.flagging`, with the threshold the caller says is in force.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skinscreen import flagging
from skinscreen.errors import UnreadableImageError
from skinscreen.models.classifier import Scorer
from skinscreen.models.preprocess import read_model_input
from skinscreen.results import DicomInfo, FileScore

logger = logging.getLogger(__name__)

Threshold = float | Sequence[float] | Callable[[Path], float] | None
"""The threshold in force: None (the model's own), one for every file, one per file in order, or
a function of the file's path (for example its site's calibrated threshold)."""


@dataclass(frozen=True, eq=False)
class Decoded:
    """A file read and resized to the model's input size, or the reason it could not be."""

    path: Path
    pixels: np.ndarray | None
    reason: str | None
    format: str | None = None
    dicom: DicomInfo | None = None


def decode(path: Path, *, size: int) -> Decoded:
    """Read and resize one file; any failure becomes a reason, never an exception."""
    try:
        image, pixels = read_model_input(path, size=size)
        return Decoded(path, pixels, None, image.format, image.dicom)
    except UnreadableImageError as exc:
        return Decoded(path, None, exc.reason)
    except Exception as exc:  # a decoder bug must not sink the batch; the type says enough
        # Neither the name nor the message (it may quote a header value): the type and where it arose.
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f"{where.filename}:{where.lineno}" if where else "?"
        logger.error("unexpected %s while decoding a file (at %s)", type(exc).__name__, at)
        return Decoded(path, None, f"unexpected error while reading: {type(exc).__name__}")


def thresholds_for(paths: Sequence[Path], threshold: Threshold, *, default: float) -> list[float]:
    """The threshold in force for each path (see `Threshold`)."""
    if threshold is None:
        return [default] * len(paths)
    if isinstance(threshold, int | float):
        return [float(threshold)] * len(paths)
    if callable(threshold):
        return [float(threshold(p)) for p in paths]
    if len(threshold) != len(paths):
        raise ValueError(f"{len(threshold)} thresholds for {len(paths)} files")
    return [float(t) for t in threshold]


def score_decoded(
    decoded: Sequence[Decoded], *, classifier: Scorer, threshold: Threshold = None
) -> list[FileScore]:
    """One model call for the decodable images of a batch; flags through `skinscreen.flagging`."""
    limits = thresholds_for([d.path for d in decoded], threshold, default=classifier.threshold)
    pixels = {i: d.pixels for i, d in enumerate(decoded) if d.pixels is not None}
    good = list(pixels)
    probs = classifier.predict(np.stack(list(pixels.values()))) if pixels else np.zeros(0)
    flags = flagging.flags(probs, np.asarray([limits[i] for i in good], dtype=np.float64))
    scored = {i: (float(p), bool(f)) for i, p, f in zip(good, probs, flags, strict=True)}
    out = []
    for i, d in enumerate(decoded):
        if i in scored:
            prob, flagged = scored[i]
            out.append(FileScore(d.path, prob, flagged, limits[i], None, d.format, d.dicom))
        else:
            out.append(FileScore(d.path, None, None, None, d.reason, d.format, d.dicom))
    return out


def iter_batches(
    paths: Sequence[Path],
    *,
    classifier: Scorer,
    batch_size: int,
    pool: Executor,
    threshold: Threshold = None,
) -> Iterator[list[FileScore]]:
    """Yield scored batches; the next batch decodes while the current one runs through the model."""
    size = classifier.input_size
    limits = thresholds_for(paths, threshold, default=classifier.threshold)
    starts = range(0, len(paths), batch_size)
    chunks = [paths[i : i + batch_size] for i in starts]
    pending = [pool.submit(decode, p, size=size) for p in chunks[0]] if chunks else []
    for index, start in enumerate(starts):
        decoded = [f.result() for f in pending]
        if index + 1 < len(chunks):
            pending = [pool.submit(decode, p, size=size) for p in chunks[index + 1]]
        yield score_decoded(decoded, classifier=classifier, threshold=limits[start : start + len(decoded)])


def score_files(
    paths: Sequence[Path],
    *,
    classifier: Scorer,
    threshold: Threshold = None,
    batch_size: int = 32,
    decode_threads: int = 2,
    pool: Executor | None = None,
    on_batch: Callable[[list[FileScore]], None] | None = None,
) -> list[FileScore]:
    """Score every path, in order; unreadable files get a reason instead of a probability.

    `threshold` is the one in force (see `Threshold`; default: the model's). `pool` decodes;
    without one, a pool of `decode_threads` is made for this call.
    """
    results: list[FileScore] = []
    with contextlib.ExitStack() as stack:
        decoders = pool or stack.enter_context(
            ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode")
        )
        for batch in iter_batches(
            paths, classifier=classifier, batch_size=batch_size, pool=decoders, threshold=threshold
        ):
            results += batch
            if on_batch:
                on_batch(batch)
    return results
