"""Score a batch of image ids against the database: the function both the worker and `run` call."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from skinscreen.db import queries
from skinscreen.db.session import session_scope
from skinscreen.models.classifier import Scorer
from skinscreen.models.scoring import FileScore, decode, score_decoded

logger = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """What one batch did: counts and the failure reasons."""

    scored: int = 0
    flagged: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: BatchReport) -> None:
        self.scored += other.scored
        self.flagged += other.flagged
        self.failed += other.failed
        self.skipped += other.skipped
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


def _outcome(image_id: int, score: FileScore) -> queries.Outcome:
    dicom = dataclasses.asdict(score.dicom) if score.dicom else None
    return queries.Outcome(image_id, score.probability, score.reason, score.format, dicom)


def score_ids(
    image_ids: Sequence[int],
    *,
    sessions: sessionmaker[Session],
    classifier: Scorer,
    pool: ThreadPoolExecutor,
) -> BatchReport:
    """Score the ids still waiting for this model version; ids already done are skipped (safe to repeat)."""
    started = time.monotonic()
    with session_scope(sessions) as session:
        todo = queries.images_to_score(session, list(image_ids), model_version=classifier.version)
    report = BatchReport(skipped=len(set(image_ids)) - len(todo))
    if not todo:
        return report
    size = classifier.input_size
    decoded = list(pool.map(lambda row: decode(Path(row[1]), size=size), todo))
    scores = score_decoded(decoded, classifier=classifier)
    with session_scope(sessions) as session:
        queries.save_outcomes(
            session,
            [_outcome(image_id, s) for (image_id, _), s in zip(todo, scores, strict=True)],
            model_version=classifier.version,
            threshold=classifier.threshold,
        )
    for s in scores:
        if s.probability is None:
            report.failed += 1
            reason = s.reason or "unknown"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
        else:
            report.scored += 1
            report.flagged += int(bool(s.flagged))
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
