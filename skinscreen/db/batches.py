"""Per-batch summaries for the review server: files, queued, scored, flagged, failed by reason, reviewed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from skinscreen.db.queries import shown_flagged_ids
from skinscreen.db.tables import Batch, Image, Review, State


def batch_summaries(session: Session, *, batch_id: int | None = None) -> list[dict[str, Any]]:
    """Per batch: files, queued, scored, flagged, failed (and by reason), reviewed."""
    flagged = shown_flagged_ids()
    reviewed = select(Review.image_id)
    stmt = (
        select(
            Batch.id,
            Batch.site,
            Batch.folder,
            Batch.first_seen,
            Batch.last_seen,
            func.count(Image.id),
            func.count(Image.id).filter(Image.state == State.queued),
            func.count(Image.id).filter(Image.state == State.scored),
            func.count(Image.id).filter(Image.id.in_(flagged)),
            func.count(Image.id).filter(Image.state == State.failed),
            func.count(Image.id).filter(Image.id.in_(reviewed)),
        )
        .outerjoin(Image, Image.batch_id == Batch.id)
        .group_by(Batch.id, Batch.site, Batch.folder, Batch.first_seen, Batch.last_seen)
        .order_by(Batch.first_seen.desc(), Batch.id.desc())
    )
    reasons = select(Image.batch_id, Image.reason, func.count()).where(Image.state == State.failed)
    if batch_id is not None:
        stmt = stmt.where(Batch.id == batch_id)
        reasons = reasons.where(Image.batch_id == batch_id)
    by_batch: dict[int | None, dict[str, int]] = {}
    for bid, reason, count in session.execute(reasons.group_by(Image.batch_id, Image.reason)):
        by_batch.setdefault(bid, {})[reason or "unknown failure"] = count
    keys = (
        "id",
        "site",
        "folder",
        "first_seen",
        "last_seen",
        "files",
        "queued",
        "scored",
        "flagged",
        "failed",
        "reviewed",
    )
    out = []
    for row in session.execute(stmt):
        summary = dict(zip(keys, row, strict=True))
        summary["failed_by_reason"] = by_batch.get(summary["id"], {})
        out.append(summary)
    return out
