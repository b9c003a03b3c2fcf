"""Score a batch of image ids and store the results: what a Celery task and the embedded `run` call."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from skinscreen import metrics
from skinscreen.config import Settings
from skinscreen.counts import Counts
from skinscreen.db import queries, sites
from skinscreen.db.exports import queue_scored as queue_dicom_results
from skinscreen.db.outcomes import store_scores
from skinscreen.db.session import session_scope
from skinscreen.models.classifier import Scorer
from skinscreen.models.screening import score_files
from skinscreen.sites.report import ModelInfo, record_drift

logger = logging.getLogger(__name__)


def score_ids(
    image_ids: Sequence[int],
    *,
    sessions: sessionmaker[Session],
    classifier: Scorer,
    pool: Executor,
    settings: Settings,
    audit_fraction: float = 0.0,
    drift: ModelInfo | None = None,
) -> Counts:
    """Score the ids still waiting for this model version; ids already done are skipped (safe to repeat).

    Each image is flagged with its site's threshold for this model version, or the model's own. With
    `drift` (the model in force: its reference), each folder batch these images finish is checked for
    drift and its warning recorded, once.
    """
    started = time.monotonic()
    with session_scope(sessions) as session:
        todo = queries.images_to_score(session, list(image_ids), model_version=classifier.version)
        limits = sites.thresholds_in_force(
            session, [i for i, _ in todo], model_version=classifier.version, default=classifier.threshold
        )
    report = Counts(skipped=len(set(image_ids)) - len(todo))
    if not todo:
        # A redelivered batch whose worker died after storing the scores: its DICOM results may
        # never have been queued, and nothing else would queue them.
        _queue_dicom_results(sessions, image_ids, model_version=classifier.version, settings=settings)
        _record_drift(sessions, image_ids, drift=drift)
        return report
    scores = score_files(
        [Path(path) for _, path in todo],
        classifier=classifier,
        threshold=[limits[i] for i, _ in todo],
        batch_size=len(todo),
        pool=pool,
    )
    # An image whose data the database refuses comes back failed; the rest of the batch is stored.
    stored = store_scores(
        sessions,
        {image_id: s for (image_id, _), s in zip(todo, scores, strict=True)},
        model_version=classifier.version,
        audit_fraction=audit_fraction,
    )
    _queue_dicom_results(sessions, image_ids, model_version=classifier.version, settings=settings)
    _record_drift(sessions, image_ids, drift=drift)
    for s in stored.values():
        report.add_result(s)
    metrics.observe_batch(
        scored=report.scored,
        flagged=report.flagged,
        failed=report.reasons,
        seconds=time.monotonic() - started,
        model_version=classifier.version,
    )
    logger.info(
        "batch of %d: %d scored, %d flagged, %d failed, %d skipped in %.2f s",
        len(image_ids),
        report.scored,
        report.flagged,
        report.failed,
        report.skipped,
        time.monotonic() - started,
    )
    return report


def _queue_dicom_results(
    sessions: sessionmaker[Session],
    image_ids: Sequence[int],
    *,
    model_version: str,
    settings: Settings,
) -> None:
    """Queue the results (SR, Secondary Capture) of the scored DICOM images among `image_ids` to be
    sent back (skinscreen.dicomnet). Idempotent, so a redelivered batch queues what a crash lost."""
    with session_scope(sessions) as session:
        queue_dicom_results(session, list(image_ids), model_version=model_version, settings=settings)


def _record_drift(
    sessions: sessionmaker[Session], image_ids: Sequence[int], *, drift: ModelInfo | None
) -> None:
    """Record the drift warnings of the folder batches these images finished (idempotent: a redelivered
    batch records what a crash lost, and nothing twice)."""
    if drift is None:
        return
    try:
        with session_scope(sessions) as session:
            record_drift(session, list(image_ids), model=drift)
    except (ValueError, TypeError, KeyError) as exc:  # a malformed stored reference: scores stay stored
        logger.error("drift not checked after a batch of %d: %s", len(image_ids), exc)
