"""SQL tables: batches, images (one per distinct content), seen paths, predictions, sites, review."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Every time in the database is UTC: a naive datetime (SQLite hands those back) is taken as UTC,
    an aware one converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class State(enum.StrEnum):
    """Where an image stands: waiting for a worker, scored, or failed with a reason; or superseded:
    it failed, then new bytes arrived at its path (a copy that paused mid-write and went on)."""

    queued = "queued"
    scored = "scored"
    failed = "failed"
    superseded = "superseded"  # 10 characters: the column's length


class Base(DeclarativeBase):
    pass


class Batch(Base):
    """One dropped folder (`inbox/<site>/<date>/`); its counts are derived from its images."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(200))
    folder: Mapped[str] = mapped_column(String(1000), unique=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="batch")


class Image(Base):
    """One distinct file content (sha256); the first path it was seen under is kept."""

    __tablename__ = "image"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batch.id"), index=True)
    path: Mapped[str] = mapped_column(String(2000))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str | None] = mapped_column(String(20))
    # DICOM values as the file gives them; longer ones are cut visibly (skinscreen/db/dicom_values.py).
    study_uid: Mapped[str | None] = mapped_column(String(256))
    series_uid: Mapped[str | None] = mapped_column(String(256))
    sop_uid: Mapped[str | None] = mapped_column(String(256))
    sop_class_uid: Mapped[str | None] = mapped_column(String(256))
    body_site: Mapped[str | None] = mapped_column(String(256))
    acquisition_date: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[State] = mapped_column(
        Enum(State, name="image_state", native_enum=False, length=10), default=State.queued, index=True
    )
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    # Set by the review server when the file no longer has the sha256 that was scored.
    file_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the retention policy removed (or archived) the file; the row, scores and verdicts stay.
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    batch: Mapped[Batch | None] = relationship(back_populates="images")
    predictions: Mapped[list[Prediction]] = relationship(back_populates="image")


class SeenFile(Base):
    """A path with the size and mtime it had when hashed, so rescans skip files already taken."""

    __tablename__ = "seen_file"
    __table_args__ = (UniqueConstraint("path", "size", "mtime_ns", name="uq_seen_file"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(2000), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"))
    reason: Mapped[str | None] = mapped_column(Text)  # why a path could not be registered
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Prediction(Base):
    """A model version's score for an image; one per (image, model version)."""

    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("image_id", "model_version", name="uq_prediction_image_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    model_version: Mapped[str] = mapped_column(String(100))
    probability: Mapped[float] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean, index=True)
    threshold: Mapped[float] = mapped_column(Float)  # the threshold in force when `flagged` was decided
    # Unflagged and drawn into the blinded audit sample (skinscreen.db.sites.audit_draw).
    audit: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    image: Mapped[Image] = relationship(back_populates="predictions")


class SiteThreshold(Base):
    """A site's own operating point for one model version, with the evidence it was chosen on.

    Absent: the model's own threshold is in force. Clearing deletes the row; the audit trail keeps
    every calibration and clear with its evidence.
    """

    __tablename__ = "site_threshold"
    __table_args__ = (UniqueConstraint("site", "model_version", name="uq_site_threshold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(100))
    threshold: Mapped[float] = mapped_column(Float)
    target_sensitivity: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(20))  # "sample" (a labelled folder) or "reviews"
    evidence: Mapped[str] = mapped_column(Text)  # JSON: counts, estimates with intervals, sample histogram
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Role(enum.StrEnum):
    """What an account may do: reviewers read cases and record verdicts; admins also manage; a
    sender (a hospital system, one site) only sends DICOM instances to be scored (STOW-RS)."""

    reviewer = "reviewer"
    admin = "admin"
    sender = "sender"


class Verdict(enum.StrEnum):
    """A dermatologist's reading of a case."""

    malignant = "malignant"
    benign = "benign"
    uncertain = "uncertain"


class Account(Base):
    """A person who signs in to the review page or the API; deactivated, never deleted."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, name="account_role", native_enum=False, length=10))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Raised to end every session of the account: a cookie signed for an older generation is refused.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A bearer token for the API; only the SHA-256 of the token is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    account: Mapped[Account] = relationship()


class Review(Base):
    """One verdict on one image by one account; a case may collect several (second opinions)."""

    __tablename__ = "review"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    verdict: Mapped[Verdict] = mapped_column(Enum(Verdict, name="verdict", native_enum=False, length=10))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    account: Mapped[Account] = relationship()


class AuditEvent(Base):
    """Who did what, when: case views, verdicts, sign-ins, account and queue changes. Append-only."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    action: Mapped[str] = mapped_column(String(50), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(100))  # the caller's address, for web actions
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ModelPromotion(Base):
    """A model version made the one whose flags the queue, the API and `cases` show; newest row wins.

    Append-only history: promoting back to an older version adds a row, so every change stays visible.
    """

    __tablename__ = "model_promotion"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(100))
    previous_version: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ExportState(enum.StrEnum):
    """Where a DICOM result stands: waiting to be sent (or retried), sent, or refused for good."""

    pending = "pending"
    sent = "sent"
    failed = "failed"


class DicomExport(Base):
    """One DICOM result object (SR or Secondary Capture) for a DICOM input, and its delivery.

    The object itself is built from the source file when it is sent; only its identity (UIDs, the
    prediction or verdict it reports) and its delivery state are stored, never patient data.
    """

    __tablename__ = "dicom_export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(
        String(100), unique=True
    )  # "sr:p<prediction>", "sc:p<..>", "sr_verified:r<review>"
    kind: Mapped[str] = mapped_column(String(20))  # sr, sc, sr_verified
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"), index=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("prediction.id"))
    review_id: Mapped[int | None] = mapped_column(ForeignKey("review.id"))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[ExportState] = mapped_column(
        Enum(ExportState, name="export_state", native_enum=False, length=10),
        default=ExportState.pending,
        index=True,
    )
    destination: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # Set while a sender builds and delivers the row: no other sender takes it, `--retry` included.
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
