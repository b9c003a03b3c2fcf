"""Export rows: one per DICOM result to deliver, with its state (pending, sent, failed) and retries.

`queue_scored` runs in the scoring transaction (an SR and a Secondary Capture per scored DICOM
image, when DICOM results are configured); `queue_verdict` runs in the verdict's transaction (a
VERIFIED SR, for images that had an SR). Both are idempotent: a row's `key` names what it reports.

A blinded audit case (an image drawn into the audit sample, without a verdict yet) is held: its rows
are queued but no sender claims them until its first verdict, so its probability, flag and heatmap
reach the PACS only after the reviewer has judged it unanchored. Claims are made with one conditional
UPDATE that sets `claimed_until`, so two senders (two `exports --retry` included) never take one row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydicom.uid import generate_uid
from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from skinscreen.config import Settings
from skinscreen.db.tables import DicomExport, ExportState, Image, Prediction, Review, utcnow

logger = logging.getLogger(__name__)

KIND_SR = "sr"
KIND_SC = "sc"
KIND_SR_VERIFIED = "sr_verified"
HELD = "held until the reviewer's verdict (blinded audit case)"
COLUMNS = [
    "id",
    "kind",
    "state",
    "attempts",
    "image_id",
    "destination",
    "last_error",
    "created_at",
    "sent_at",
]


def _insert(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert rows whose key is new; return how many were new."""
    if not rows:
        return 0
    keys = [r["key"] for r in rows]
    existing = set(session.execute(select(DicomExport.key).where(DicomExport.key.in_(keys))).scalars())
    fresh = [r for r in rows if r["key"] not in existing]
    now = utcnow()
    for row in fresh:
        session.add(
            DicomExport(
                **row,
                sop_instance_uid=str(generate_uid()),
                state=ExportState.pending,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    session.flush()
    return len(fresh)


def queue_scored(
    session: Session, image_ids: Sequence[int], *, model_version: str, settings: Settings
) -> int:
    """Pending SR and SC exports for the DICOM images among `image_ids` scored by `model_version`."""
    if not image_ids:
        return 0
    if not settings.dicom_results:
        return 0
    stmt = (
        select(Prediction.id, Prediction.image_id, Prediction.audit)
        .join(Image, Image.id == Prediction.image_id)
        .where(
            Prediction.image_id.in_(list(image_ids)),
            Prediction.model_version == model_version,
            Image.format == "dicom",
            Image.study_uid.is_not(None),
        )
    )
    rows = []
    for prediction_id, image_id, audit in session.execute(stmt):
        for kind in (KIND_SR, KIND_SC):
            rows.append(
                {
                    "key": f"{kind}:p{prediction_id}",
                    "kind": kind,
                    "image_id": image_id,
                    "prediction_id": prediction_id,
                    "last_error": HELD if audit else None,  # what `exports` shows until the verdict
                }
            )
    made = _insert(session, rows)
    if made:
        logger.info("queued %d DICOM results", made)
    return made


def queue_verdict(session: Session, review: Review) -> int:
    """A pending VERIFIED SR for a verdict on an image that already has an SR export."""
    latest_sr = session.execute(
        select(DicomExport.prediction_id)
        .where(DicomExport.image_id == review.image_id, DicomExport.kind == KIND_SR)
        .order_by(DicomExport.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if latest_sr is None:
        return 0
    row = {
        "key": f"{KIND_SR_VERIFIED}:r{review.id}",
        "kind": KIND_SR_VERIFIED,
        "image_id": review.image_id,
        "prediction_id": latest_sr,
        "review_id": review.id,
    }
    return _insert(session, [row])


def held() -> ColumnElement[bool]:
    """An export of a blinded audit case: an audit prediction of its image and no verdict yet."""
    audit = exists(
        select(Prediction.id).where(Prediction.image_id == DicomExport.image_id, Prediction.audit.is_(True))
    )
    reviewed = exists(select(Review.id).where(Review.image_id == DicomExport.image_id))
    return and_(audit, ~reviewed)


def _claimable(now: datetime) -> ColumnElement[bool]:
    unclaimed = or_(DicomExport.claimed_until.is_(None), DicomExport.claimed_until <= now)
    return and_(DicomExport.state == ExportState.pending, unclaimed)


def claim_due(
    session: Session, *, now: datetime, lease: timedelta, limit: int, everything: bool
) -> list[int]:
    """Ids of pending rows due now (`everything`: backoff or not), claimed for `lease` by this sender.

    Rows another sender claimed (until its claim expires) and held rows (`held`) are never taken.
    The claim is one UPDATE whose WHERE is checked again row by row when it is written (PostgreSQL
    re-reads a row another transaction changed; SQLite has one writer), so of two senders at once
    only one claims a row; the candidates are locked as they are read (FOR UPDATE SKIP LOCKED) so
    the other skips them instead of waiting."""
    candidates = select(DicomExport.id).where(_claimable(now), ~held())
    if not everything:
        candidates = candidates.where(DicomExport.next_attempt_at <= now)
    candidates = candidates.order_by(DicomExport.id).limit(limit).with_for_update(skip_locked=True)
    claimed = session.execute(
        update(DicomExport)
        .where(DicomExport.id.in_(candidates), _claimable(now))
        .values(claimed_until=now + lease)
        .returning(DicomExport.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(claimed.scalars())


def previous_sr(session: Session, export: DicomExport) -> DicomExport | None:
    """The SR version a VERIFIED SR supersedes: the image's latest SR row before it."""
    return session.execute(
        select(DicomExport)
        .where(
            DicomExport.image_id == export.image_id,
            DicomExport.kind.in_([KIND_SR, KIND_SR_VERIFIED]),
            DicomExport.id < export.id,
        )
        .order_by(DicomExport.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def backoff(attempts: int, settings: Settings) -> timedelta:
    """The wait after `attempts` failed tries: doubling from `export_backoff`, capped."""
    seconds = min(settings.export_backoff * 2 ** max(0, attempts - 1), settings.export_backoff_max)
    return timedelta(seconds=seconds)


def record(
    session: Session,
    export_id: int,
    *,
    state: ExportState,
    destination: str,
    error: str | None,
    settings: Settings,
) -> None:
    """Store one delivery attempt's outcome; pending ones get their next try after a backoff."""
    row = session.get(DicomExport, export_id)
    if row is None:
        return
    now = utcnow()
    row.attempts += 1
    row.destination = destination
    row.state = state
    row.last_error = error
    row.claimed_until = None
    if state == ExportState.sent:
        row.sent_at = now
    elif state == ExportState.pending:
        row.next_attempt_at = now + backoff(row.attempts, settings)


def retry_failed(session: Session) -> int:
    """Failed exports back to pending, due now; return how many."""
    result = session.execute(
        update(DicomExport)
        .where(DicomExport.state == ExportState.failed)
        .values(state=ExportState.pending, next_attempt_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def make_due(session: Session) -> None:
    """Every pending export due now (a manual retry skips the backoff)."""
    session.execute(
        update(DicomExport).where(DicomExport.state == ExportState.pending).values(next_attempt_at=utcnow())
    )


def list_exports(
    session: Session, *, state: ExportState | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Export rows, newest first, as dicts of COLUMNS."""
    stmt = select(DicomExport).order_by(DicomExport.id.desc())
    if state is not None:
        stmt = stmt.where(DicomExport.state == state)
    if limit:
        stmt = stmt.limit(limit)
    return [{c: getattr(row, c) for c in COLUMNS} for row in session.execute(stmt).scalars()]


def counts(session: Session) -> dict[str, int]:
    """Exports by state (every state present, zero included)."""
    out = {s.value: 0 for s in ExportState}
    for state, count in session.execute(select(DicomExport.state, func.count()).group_by(DicomExport.state)):
        out[ExportState(state).value] = int(count)
    return out
