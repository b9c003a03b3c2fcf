"""The review server's reads and writes: filtered cases, verdicts, batch summaries, accounts, audit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, delete, exists, func, select, update
from sqlalchemy.orm import Session

from skinscreen.db.queries import latest_prediction
from skinscreen.db.tables import (
    Account,
    ApiToken,
    AuditEvent,
    Batch,
    Image,
    Prediction,
    Review,
    Role,
    State,
    Verdict,
    utcnow,
)

logger = logging.getLogger(__name__)

SORT_KEYS = ("probability", "created", "id")
"""Columns a case list can be sorted by."""


@dataclass(frozen=True)
class CaseFilter:
    """Which cases to list; None means no condition on that field."""

    flagged: bool | None = None
    reviewed: bool | None = None
    audit: bool | None = None
    state: State | None = None
    site: str | None = None
    batch_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_probability: float | None = None
    max_probability: float | None = None


def as_utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC; an aware one is converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _review_counts() -> Any:
    return select(Review.image_id, func.count(Review.id).label("n")).group_by(Review.image_id).subquery()


def _has_review() -> ColumnElement[bool]:
    return exists(select(Review.id).where(Review.image_id == Image.id))


def _blinded() -> ColumnElement[bool]:
    """An audit case without a verdict: probability and heatmap stay hidden so the verdict is not anchored."""
    return and_(Prediction.audit.is_(True), ~_has_review())


def _visible_probability() -> Any:
    # Filters and sorting see no probability for a blinded case, or its rank would give the score away.
    return case((_blinded(), None), else_=Prediction.probability)


def _cases(filters: CaseFilter) -> Select[Any]:
    latest, counts = latest_prediction(), _review_counts()
    stmt = (
        select(Image, Prediction, Batch.site, func.coalesce(counts.c.n, 0))
        .outerjoin(latest, latest.c.image_id == Image.id)
        .outerjoin(Prediction, Prediction.id == latest.c.pid)
        .outerjoin(Batch, Batch.id == Image.batch_id)
        .outerjoin(counts, counts.c.image_id == Image.id)
    )
    f = filters
    if f.flagged is not None:
        stmt = stmt.where(Prediction.flagged.is_(f.flagged))
    if f.reviewed is not None:
        stmt = stmt.where(_has_review() if f.reviewed else ~_has_review())
    if f.audit is not None:
        stmt = stmt.where(Prediction.audit.is_(f.audit))
    if f.state is not None:
        stmt = stmt.where(Image.state == f.state)
    if f.site is not None:
        stmt = stmt.where(Batch.site == f.site)
    if f.batch_id is not None:
        stmt = stmt.where(Image.batch_id == f.batch_id)
    if f.since is not None:
        stmt = stmt.where(Image.created_at >= as_utc(f.since))
    if f.until is not None:
        stmt = stmt.where(Image.created_at < as_utc(f.until))
    if f.min_probability is not None:
        stmt = stmt.where(_visible_probability() >= f.min_probability)
    if f.max_probability is not None:
        stmt = stmt.where(_visible_probability() <= f.max_probability)
    return stmt


def _ordered(stmt: Select[Any], *, sort: str, descending: bool) -> Select[Any]:
    column: Any = {"probability": _visible_probability(), "created": Image.created_at, "id": Image.id}[sort]
    key = column.desc() if descending else column.asc()
    return stmt.order_by(key.nulls_last(), Image.id.desc() if descending else Image.id)


def _row(
    image: Image, pred: Prediction | None, site: str | None, reviews: int, *, blind: bool = True
) -> dict[str, Any]:
    audit = bool(pred.audit) if pred else False
    blinded = blind and audit and not reviews
    return {
        "id": image.id,
        "batch_id": image.batch_id,
        "site": site,
        "format": image.format,
        "state": image.state.value,
        "reason": image.reason,
        "probability": pred.probability if pred and not blinded else None,
        "flagged": pred.flagged if pred else None,
        "threshold": pred.threshold if pred else None,
        "model_version": pred.model_version if pred else None,
        "audit": audit,
        "blinded": blinded,
        "reviews": int(reviews),
        "created_at": image.created_at,
    }


def list_cases(
    session: Session,
    filters: CaseFilter,
    *,
    sort: str = "probability",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """One page of cases as dicts, and how many match in all."""
    stmt = _cases(filters)
    total = session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    page = _ordered(stmt, sort=sort, descending=descending).offset(offset).limit(limit)
    return [_row(*r) for r in session.execute(page)], int(total)


def iter_cases(
    session: Session,
    filters: CaseFilter,
    *,
    sort: str = "probability",
    descending: bool = True,
    chunk: int = 500,
    blind: bool = True,
) -> Iterator[dict[str, Any]]:
    """Every matching case, with its path, fetched a chunk at a time (for exports)."""
    stmt = _ordered(_cases(filters), sort=sort, descending=descending)
    offset = 0
    while True:
        rows = session.execute(stmt.offset(offset).limit(chunk)).all()
        for image, pred, site, reviews in rows:
            yield {
                **_row(image, pred, site, reviews, blind=blind),
                "path": image.path,
                "sha256": image.sha256,
                "study_uid": image.study_uid,
                "sop_uid": image.sop_uid,
            }
        if len(rows) < chunk:
            return
        offset += chunk


def get_case(session: Session, image_id: int) -> dict[str, Any] | None:
    """One case with its DICOM context and every verdict so far, oldest first; None if unknown."""
    found = session.execute(_cases(CaseFilter()).where(Image.id == image_id)).first()
    if found is None:
        return None
    image, pred, site, reviews = found
    case = _row(image, pred, site, reviews)
    case.update(
        sha256=image.sha256,
        file_name=image.path.replace("\\", "/").rsplit("/", 1)[-1],
        study_uid=image.study_uid,
        series_uid=image.series_uid,
        sop_uid=image.sop_uid,
        sop_class_uid=image.sop_class_uid,
        body_site=image.body_site,
        acquisition_date=image.acquisition_date,
        verdicts=reviews_of(session, image_id),
    )
    return case


def image_file(session: Session, image_id: int) -> tuple[str, str] | None:
    """(path, sha256) of an image, for the server to read; never sent to a browser."""
    row = session.execute(select(Image.path, Image.sha256).where(Image.id == image_id)).first()
    return (row[0], row[1]) if row else None


def reviews_of(session: Session, image_id: int) -> list[dict[str, Any]]:
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
    return review


QUEUE = CaseFilter(flagged=True, reviewed=False)
AUDIT_QUEUE = CaseFilter(audit=True, reviewed=False)


def first_in_queue(session: Session) -> int | None:
    """The flagged unreviewed case with the highest probability; when none is left, the oldest audit case."""
    rows, _ = list_cases(session, QUEUE, limit=1)
    if not rows:
        rows, _ = list_cases(session, AUDIT_QUEUE, sort="id", descending=False, limit=1)
    return rows[0]["id"] if rows else None


def is_blinded(session: Session, image_id: int) -> bool:
    """Whether the case is an audit case still waiting for its verdict (no probability, no heatmap)."""
    latest = latest_prediction()
    stmt = (
        select(Prediction.id)
        .join(latest, latest.c.pid == Prediction.id)
        .join(Image, Image.id == Prediction.image_id)
        .where(Prediction.image_id == image_id, _blinded())
    )
    return session.execute(stmt).first() is not None


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


def batch_summaries(session: Session, *, batch_id: int | None = None) -> list[dict[str, Any]]:
    """Per batch: files, queued, scored, flagged, failed (and by reason), reviewed."""
    flagged = select(Prediction.image_id).where(Prediction.flagged.is_(True))
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


# -- accounts and tokens ---------------------------------------------------------------------------


def add_account(session: Session, *, name: str, role: Role, password_hash: str) -> Account:
    account = Account(name=name, role=role, password_hash=password_hash, active=True, created_at=utcnow())
    session.add(account)
    session.flush()
    return account


def account_named(session: Session, name: str) -> Account | None:
    return session.execute(select(Account).where(Account.name == name)).scalar_one_or_none()


def list_accounts(session: Session) -> list[Account]:
    return list(session.execute(select(Account).order_by(Account.name)).scalars())


def set_password_hash(session: Session, *, account_id: int, password_hash: str) -> None:
    session.execute(update(Account).where(Account.id == account_id).values(password_hash=password_hash))


def add_token(session: Session, *, token_hash: str, account_id: int, expires_at: datetime) -> None:
    session.add(
        ApiToken(token_hash=token_hash, account_id=account_id, expires_at=expires_at, created_at=utcnow())
    )


def delete_token(session: Session, token_hash: str) -> None:
    session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash))


def account_for_token(session: Session, token_hash: str) -> Account | None:
    """The active account holding this unexpired token."""
    stmt = (
        select(Account)
        .join(ApiToken, ApiToken.account_id == Account.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.expires_at > utcnow(), Account.active.is_(True))
    )
    return session.execute(stmt).scalar_one_or_none()


# -- audit -----------------------------------------------------------------------------------------


def add_event(
    session: Session,
    *,
    account_id: int | None,
    action: str,
    image_id: int | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        AuditEvent(
            account_id=account_id, action=action, image_id=image_id, detail=detail, created_at=utcnow()
        )
    )


def list_events(
    session: Session,
    *,
    action: str | None = None,
    image_id: int | None = None,
    account: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Audit events, newest first, and how many match."""
    stmt = select(AuditEvent, Account.name).outerjoin(Account, Account.id == AuditEvent.account_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if image_id is not None:
        stmt = stmt.where(AuditEvent.image_id == image_id)
    if account is not None:
        stmt = stmt.where(Account.name == account)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    page = stmt.order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
    rows = [
        {
            "id": e.id,
            "account": name,
            "action": e.action,
            "image_id": e.image_id,
            "detail": e.detail,
            "created_at": e.created_at,
        }
        for e, name in session.execute(page)
    ]
    return rows, int(total)
