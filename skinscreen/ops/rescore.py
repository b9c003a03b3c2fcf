"""Shadow re-scoring: existing images scored with another model version, next to their first scores.

Only `prediction` rows are added (one per image and version; a repeat adds nothing). An image's state,
reason and the predictions reviewers see do not change: that takes `skinscreen models promote`.
Embedded (`rescore`) and the workers (`skinscreen.worker.rescore_tasks`) both go through `rescore_ids`.
Each new prediction is drawn into its site's audit sample as the first scoring does (`sites.audit_ids`:
seeded per image, so an image unflagged by both versions is an audit case under either), so the audit
sample and its blinding hold whichever version is promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from skinscreen.db import sites
from skinscreen.db.queries import _insert_or_nothing
from skinscreen.db.session import session_scope
from skinscreen.db.tables import Batch, Image, Prediction, State, utcnow
from skinscreen.models.classifier import Scorer
from skinscreen.models.screening import score_files

logger = logging.getLogger(__name__)


@dataclass
class RescoreReport:
    """What a re-score did: images scored, flagged by the new version, and failures by reason."""

    version: str = ""
    targets: int = 0
    scored: int = 0
    flagged: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: RescoreReport) -> None:
        self.scored += other.scored
        self.flagged += other.flagged
        self.failed += other.failed
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "targets": self.targets,
            "scored": self.scored,
            "flagged": self.flagged,
            "failed": self.failed,
            "failed_by_reason": dict(sorted(self.reasons.items())),
        }


def rescore_targets(
    session: Session, *, version: str, site: str | None = None, since: datetime | None = None
) -> list[int]:
    """Ids of scored images whose file is still there and that `version` has not scored yet."""
    done = select(Prediction.image_id).where(Prediction.model_version == version)
    stmt = select(Image.id).where(
        Image.state == State.scored, Image.purged_at.is_(None), Image.id.not_in(done)
    )
    if site is not None:
        stmt = stmt.where(Image.batch_id.in_(select(Batch.id).where(Batch.site == site)))
    if since is not None:
        from skinscreen.db.tables import as_utc

        stmt = stmt.where(Image.created_at >= as_utc(since))
    return list(session.execute(stmt.order_by(Image.id)).scalars())


def rescore_ids(
    image_ids: Sequence[int],
    *,
    sessions: sessionmaker[Session],
    classifier: Scorer,
    pool: Executor,
    audit_fraction: float = 0.0,
) -> RescoreReport:
    """Score these images with `classifier` and add its predictions; safe to repeat."""
    report = RescoreReport(version=classifier.version, targets=len(image_ids))
    with session_scope(sessions) as session:
        done = select(Prediction.image_id).where(Prediction.model_version == classifier.version)
        rows = session.execute(
            select(Image.id, Image.path)
            .where(Image.id.in_(list(image_ids)), Image.purged_at.is_(None), Image.id.not_in(done))
            .order_by(Image.id)
        ).all()
    if not rows:
        return report
    # The one scoring path; the flag and threshold come from it (the model's own threshold).
    scores = score_files(
        [Path(path) for _, path in rows], classifier=classifier, batch_size=len(rows), pool=pool
    )
    now = utcnow()
    values: list[dict[str, Any]] = []
    for (image_id, _), score in zip(rows, scores, strict=True):
        if score.probability is None:
            report.failed += 1
            reason = score.reason or "unknown"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            continue
        flagged = bool(score.flagged)
        report.scored += 1
        report.flagged += int(flagged)
        values.append(
            {
                "image_id": image_id,
                "model_version": classifier.version,
                "probability": score.probability,
                "flagged": flagged,
                "threshold": score.threshold,
                "created_at": now,
            }
        )
    if values:
        with session_scope(sessions) as session:
            drawn = {int(v["image_id"]): bool(v["flagged"]) for v in values}
            audit = sites.audit_ids(session, drawn, fraction=audit_fraction)
            for v in values:
                v["audit"] = v["image_id"] in audit
            stmt = _insert_or_nothing(session, Prediction.__table__, ["image_id", "model_version"])
            session.execute(stmt, values)
    logger.info(
        "re-scored %d images with %s: %d flagged, %d failed",
        report.scored,
        report.version,
        report.flagged,
        report.failed,
    )
    return report


def rescore(
    image_ids: Sequence[int],
    *,
    sessions: sessionmaker[Session],
    classifier: Scorer,
    pool: Executor,
    batch_size: int = 32,
    audit_fraction: float = 0.0,
    on_batch: Callable[[RescoreReport], None] | None = None,
) -> RescoreReport:
    """Re-score in this process, a batch at a time (`on_batch` after each, for progress)."""
    total = RescoreReport(version=classifier.version, targets=len(image_ids))
    for start in range(0, len(image_ids), batch_size):
        part = rescore_ids(
            image_ids[start : start + batch_size],
            sessions=sessions,
            classifier=classifier,
            pool=pool,
            audit_fraction=audit_fraction,
        )
        total.add(part)
        if on_batch is not None:
            on_batch(part)
    return total


def scored_by(session: Session, *, version: str, image_ids: Sequence[int]) -> int:
    """How many of these images have a prediction of `version` (progress of a re-score by the workers)."""
    stmt = select(func.count()).where(Prediction.model_version == version, Prediction.image_id.in_(image_ids))
    return int(session.execute(stmt).scalar_one())


def flagged_count(session: Session, *, version: str, image_ids: Sequence[int]) -> int:
    """How many of these images `version` flagged."""
    stmt = select(func.count()).where(
        Prediction.model_version == version, Prediction.image_id.in_(image_ids), Prediction.flagged.is_(True)
    )
    return int(session.execute(stmt).scalar_one())
