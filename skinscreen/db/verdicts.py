"""Verdicts (the `review` table): append-only, one row per reading of a case by an account."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from skinscreen.db.queries import latest_prediction
from skinscreen.db.tables import Account, Image, Prediction, Review, Verdict, utcnow


def reviews_of(session: Session, image_id: int) -> list[dict[str, Any]]:
    """Every verdict on a case, oldest first."""
    stmt = (
        select(Review, Account.name)
        .join(Account, Account.id == Review.account_id)
        .where(Review.image_id == image_id)
        .order_by(Review.created_at, Review.id)
    )
    return [
        {"id": r.id, "verdict": r.verdict.value, "note": r.note, "reviewer": name, "created_at": r.created_at}
        for r, name in session.execute(stmt)
    ]


def add_review(
    session: Session, *, image_id: int, account_id: int, verdict: Verdict, note: str | None
) -> Review:
    review = Review(image_id=image_id, account_id=account_id, verdict=verdict, note=note, created_at=utcnow())
    session.add(review)
    session.flush()
    from skinscreen.db.exports import queue_verdict

    queue_verdict(session, review)  # a VERIFIED SR follows, for DICOM input whose SR was queued
    return review


def all_reviews(session: Session) -> Iterator[dict[str, Any]]:
    """Every verdict with its case's score, oldest first (the `reviews export` rows)."""
    latest = latest_prediction()
    stmt = (
        select(Review, Account.name, Image, Prediction)
        .join(Account, Account.id == Review.account_id)
        .join(Image, Image.id == Review.image_id)
        .outerjoin(latest, latest.c.image_id == Image.id)
        .outerjoin(Prediction, Prediction.id == latest.c.pid)
        .order_by(Review.created_at, Review.id)
    )
    for review, name, image, pred in session.execute(stmt):
        yield {
            "review_id": review.id,
            "image_id": image.id,
            "sha256": image.sha256,
            "path": image.path,
            "study_uid": image.study_uid,
            "sop_uid": image.sop_uid,
            "verdict": review.verdict.value,
            "note": review.note,
            "reviewer": name,
            "reviewed_at": review.created_at.isoformat(),
            "probability": pred.probability if pred else None,
            "flagged": pred.flagged if pred else None,
            "model_version": pred.model_version if pred else None,
        }
