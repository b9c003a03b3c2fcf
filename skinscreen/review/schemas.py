"""Request and response bodies of the review API, and its query models (built on `db.cases.CaseFilter`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from skinscreen.db.cases import MAX_ID, CaseFilter
from skinscreen.db.tables import Role, State, Verdict, as_utc
from skinscreen.review.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, NAME_PATTERN

MAX_PAGE = 100_000


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and lone surrogates (legal in JSON escapes) cannot be encoded.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


Text = Annotated[str, AfterValidator(_storable)]
Timestamp = Annotated[datetime, AfterValidator(as_utc)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Password = Annotated[Text, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]


class CaseQuery(CaseFilter):
    """The case filter plus an order: the query of the CSV export."""

    sort: Literal["probability", "created", "id"] = "probability"
    order: Literal["asc", "desc"] = "desc"


class CaseListQuery(CaseQuery):
    """The case filter, an order and a page: the query of the case list."""

    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    per_page: int = Field(default=50, ge=1, le=500)


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Annotated[str, Field(max_length=50, pattern=r"^[a-z_]+$")] | None = None
    case: int | None = Field(default=None, ge=1, le=MAX_ID)
    account: Name | None = None
    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    per_page: int = Field(default=100, ge=1, le=1000)


class CaseOut(BaseModel):
    id: int
    batch_id: int | None
    site: str | None
    format: str | None
    state: State
    reason: str | None
    probability: float | None = Field(description="null while the case is blinded")
    flagged: bool | None
    threshold: float | None
    model_version: str | None
    audit: bool = Field(description="drawn into the site's audit sample of unflagged cases")
    blinded: bool = Field(description="an audit case without a verdict: no probability, no heatmap")
    reviews: int
    created_at: Timestamp


class VerdictOut(BaseModel):
    id: int
    verdict: Verdict
    note: str | None
    reviewer: str
    created_at: Timestamp


class CaseDetail(CaseOut):
    sha256: str
    file_name: str
    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    sop_class_uid: str | None
    body_site: str | None
    acquisition_date: str | None
    file_changed_at: Timestamp | None = Field(
        default=None, description="when the server found the file no longer has the scored sha256"
    )
    verdicts: list[VerdictOut]


class CasePage(BaseModel):
    items: list[CaseOut]
    total: int
    page: int
    per_page: int


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    note: Annotated[Text, Field(max_length=2000)] | None = None


class BatchOut(BaseModel):
    id: int
    site: str
    folder: str
    first_seen: Timestamp
    last_seen: Timestamp
    files: int
    queued: int
    scored: int
    flagged: int
    failed: int
    failed_by_reason: dict[str, int]
    reviewed: int


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: Timestamp


class Me(BaseModel):
    name: str
    role: Role


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    role: Role = Role.reviewer
    password: Password


class AccountPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    active: bool | None = None
    password: Password | None = None


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    active: bool
    created_at: Timestamp


class RequeueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text, Field(max_length=2000)] | None = None


class RequeueOut(BaseModel):
    requeued: int


class AuditEventOut(BaseModel):
    id: int
    account: str | None
    action: str
    image_id: int | None
    detail: str | None
    client: str | None
    created_at: Timestamp


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    page: int
    per_page: int


def page_of(model: type[BaseModel], rows: list[dict[str, Any]]) -> list[Any]:
    return [model.model_validate(r) for r in rows]
