"""Cases (an image with its latest score and verdict count): the one filter, lists, one case, its file.

`CaseFilter` is the only definition of which cases to show: the API validates its query parameters
with it, `skinscreen cases` builds one from its options, and `list_cases`/`iter_cases` apply it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, Select, and_, case, exists, func, select, update
from sqlalchemy.orm import Session

from skinscreen.db.queries import latest_prediction
from skinscreen.db.tables import Batch, Image, Prediction, Review, State, as_utc, utcnow
from skinscreen.db.verdicts import reviews_of

MAX_ID = 2**31 - 1
"""Ids are 32-bit integers in the database; a larger one is a validation error, not a database error."""
SORT_KEYS = ("probability", "created", "id")
"""Columns a case list can be sorted by."""


def _utc(value: datetime | None) -> datetime | None:
    try:
        return None if value is None else as_utc(value)
    except OverflowError as exc:
        raise ValueError("date out of range") from exc


Label = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
UtcDatetime = Annotated[datetime | None, AfterValidator(_utc)]
Probability = Annotated[float | None, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class CaseFilter(BaseModel):
    """Which cases to list; None means no condition on that field. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flagged: bool | None = None
    reviewed: bool | None = None
    audit: bool | None = Field(default=None, description="only audit-sample cases (or only others)")
    state: State | None = None
    site: Label | None = None
    batch: int | None = Field(default=None, ge=1, le=MAX_ID)
    since: UtcDatetime = Field(default=None, description="registered at or after (naive: UTC)")
    until: UtcDatetime = Field(default=None, description="registered before (naive: UTC)")
    min_probability: Probability = None
    max_probability: Probability = None

    @model_validator(mode="after")
    def _ranges(self) -> CaseFilter:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")
        low, high = self.min_probability, self.max_probability
        if low is not None and high is not None and low > high:
            raise ValueError("min_probability must not exceed max_probability")
        return self


@dataclass(frozen=True)
class CaseFile:
    """Where a case's file is, what was scored and by which model: for the server, never sent to a browser."""

    image_id: int
    path: str
    sha256: str
    size: int
    model_version: str | None
    folder: str | None  # the batch folder: <inbox>/<site>/...
    site: str | None


def _review_counts() -> Any:
    return select(Review.image_id, func.count(Review.id).label("n")).group_by(Review.image_id).subquery()


def _has_review() -> ColumnElement[bool]:
    return exists(select(Review.id).where(Review.image_id == Image.id))


def _blinded() -> ColumnElement[bool]:
    """An audit case without a verdict: probability and heatmap stay hidden so the verdict is not anchored.

    `Prediction` is the shown one (`queries.latest_prediction`: the promoted model version's), so the
    audit marking followed is that of the prediction reviewers would otherwise see.
    """
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
    if f.batch is not None:
        stmt = stmt.where(Image.batch_id == f.batch)
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
        purged_at=image.purged_at,
        file_changed_at=image.file_changed_at,
        verdicts=reviews_of(session, image_id),
    )
    return case


def case_file(session: Session, image_id: int) -> CaseFile | None:
    """The file of a case and the model version of its latest score; None if the case is unknown."""
    latest = latest_prediction()
    stmt = (
        select(Image.path, Image.sha256, Image.size, Prediction.model_version, Batch.folder, Batch.site)
        .outerjoin(latest, latest.c.image_id == Image.id)
        .outerjoin(Prediction, Prediction.id == latest.c.pid)
        .outerjoin(Batch, Batch.id == Image.batch_id)
        .where(Image.id == image_id)
    )
    row = session.execute(stmt).first()
    return CaseFile(image_id, *row) if row else None


def mark_file_changed(session: Session, image_id: int) -> None:
    """Note (once) that the case's file no longer has the scored sha256."""
    session.execute(
        update(Image)
        .where(Image.id == image_id, Image.file_changed_at.is_(None))
        .values(file_changed_at=utcnow())
    )


def case_exists(session: Session, image_id: int) -> bool:
    return session.execute(select(Image.id).where(Image.id == image_id)).first() is not None


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
