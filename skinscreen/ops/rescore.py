"""Shadow re-scoring: existing images scored with another model version, next to their first scores.

Only `prediction` rows are added (one per image and version; a repeat adds nothing). An image's state,
reason and the predictions reviewers see do not change: that takes `skinscreen models promote`.
Embedded (`rescore`) and the workers (`skinscreen.worker.rescore_tasks`) both go through `rescore_ids`.
Predictions are written by the first scoring's own write path (`db.queries.save_scores`, in shadow
mode), so each is drawn into its site's audit sample the same way and the audit sample and its
blinding hold whichever version is promoted; the tally is the pipeline's `Counts`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from skinscreen.counts import Counts
from skinscreen.db.outcomes import store_scores
from skinscreen.db.session import session_scope
from skinscreen.db.tables import Batch, Image, Prediction, State
from skinscreen.models.classifier import Scorer
from skinscreen.models.screening import score_files

logger = logging.getLogger(__name__)


def summary(tally: Counts, *, version: str, targets: int) -> dict[str, Any]:
    """What a re-score did, as `skinscreen rescore` prints it and the audit trail records it."""
    return {
        "model_version": version,
        "targets": targets,
        "scored": tally.scored,
        "flagged": tally.flagged,
        "failed": tally.failed,
        "failed_by_reason": dict(sorted(tally.reasons.items())),
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
) -> Counts:
    """Score these images with `classifier` and add its predictions; safe to repeat.

    Images this version already scored are skipped, and not counted.
    """
    tally = Counts()
    with session_scope(sessions) as session:
        done = select(Prediction.image_id).where(Prediction.model_version == classifier.version)
        rows = session.execute(
            select(Image.id, Image.path)
            .where(Image.id.in_(list(image_ids)), Image.purged_at.is_(None), Image.id.not_in(done))
            .order_by(Image.id)
        ).all()
    if not rows:
        return tally
    # The one scoring path; the flag and threshold come from it (the model's own threshold).
    scores = score_files(
        [Path(path) for _, path in rows], classifier=classifier, batch_size=len(rows), pool=pool
    )
    # The one write path, in shadow: predictions only, the image rows are left as they are.
    stored = store_scores(
        sessions,
        {image_id: score for (image_id, _), score in zip(rows, scores, strict=True)},
        model_version=classifier.version,
        audit_fraction=audit_fraction,
        shadow=True,
    )
    for score in stored.values():
        tally.add_result(score)
    logger.info(
        "re-scored %d images with %s: %d flagged, %d failed",
        tally.scored,
        classifier.version,
        tally.flagged,
        tally.failed,
    )
    return tally


def rescore(
    image_ids: Sequence[int],
    *,
    sessions: sessionmaker[Session],
    classifier: Scorer,
    pool: Executor,
    batch_size: int = 32,
    audit_fraction: float = 0.0,
    on_batch: Callable[[Counts], None] | None = None,
) -> Counts:
    """Re-score in this process, a batch at a time (`on_batch` after each, for progress)."""
    total = Counts()
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
