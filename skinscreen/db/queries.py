"""The pipeline's reads and writes (ingester, workers, sweeper, `status`); the review server's are in
cases, verdicts, accounts, tokens, audit and batches. Safe to repeat: unique keys and conflict-ignoring
inserts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from skinscreen.db import sites
from skinscreen.db.dicom_values import dicom_values
from skinscreen.db.tables import Batch, Image, ModelPromotion, Prediction, SeenFile, State, utcnow
from skinscreen.results import FileScore

IDLE_AFTER = timedelta(seconds=60)
"""A gap longer than this between two stored batches is idle time, not scoring time (`status`)."""


def _insert_or_nothing(session: Session, table: Any, keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING in the session's dialect (SQLite or PostgreSQL)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=keys)


def _insert_ignoring_conflicts(
    session: Session, table: Any, values: dict[str, Any], keys: list[str], *, returning: Any = None
) -> Any:
    """Insert unless a row with these keys exists; with `returning`, that column of the new row, or None."""
    stmt = _insert_or_nothing(session, table, keys).values(**values)
    if returning is None:
        session.execute(stmt)
        return None
    return session.execute(stmt.returning(returning)).scalar_one_or_none()


def is_seen(session: Session, *, path: str, size: int, mtime_ns: int) -> bool:
    """Whether this path was already taken with this size and mtime."""
    return bool(seen_among(session, [(path, size, mtime_ns)]))


def seen_among(session: Session, keys: Sequence[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
    """Which of these (path, size, mtime_ns) were already taken: one query for a chunk of files."""
    wanted = set(keys)
    if not wanted:
        return set()
    paths = sorted({path for path, _, _ in wanted})
    rows = session.execute(
        select(SeenFile.path, SeenFile.size, SeenFile.mtime_ns).where(SeenFile.path.in_(paths))
    )
    return {(p, s, m) for p, s, m in rows} & wanted


def seen_keys(session: Session) -> set[tuple[str, int, int]]:
    """All (path, size, mtime_ns) taken so far, for a rescan to skip."""
    rows = session.execute(select(SeenFile.path, SeenFile.size, SeenFile.mtime_ns))
    return {(p, s, m) for p, s, m in rows}


def folder_batch(session: Session, *, site: str, folder: str) -> int:
    """The id of a folder's batch, created on first sight; its last_seen moves to now."""
    now = utcnow()
    _insert_ignoring_conflicts(
        session,
        Batch.__table__,
        {"site": site, "folder": folder, "first_seen": now, "last_seen": now},
        ["folder"],
    )
    session.execute(update(Batch).where(Batch.folder == folder).values(last_seen=now))
    return int(session.execute(select(Batch.id).where(Batch.folder == folder)).scalar_one())


@dataclasses.dataclass(frozen=True)
class NewFile:
    """A complete, hashed file to register: where it is, what it holds, which site and batch folder."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    site: str
    folder: str


def register_file(
    session: Session,
    *,
    path: str,
    size: int,
    mtime_ns: int,
    sha256: str,
    site: str,
    folder: str,
    batch_ids: dict[str, int] | None = None,
) -> tuple[int, bool]:
    """Record a complete file; return (image id, True if its content is new). See `register_files`."""
    record = NewFile(path=path, size=size, mtime_ns=mtime_ns, sha256=sha256, site=site, folder=folder)
    return register_files(session, [record], batch_ids=batch_ids)[0]


def register_files(
    session: Session, files: Sequence[NewFile], *, batch_ids: dict[str, int] | None = None
) -> list[tuple[int, bool]]:
    """Record complete files; return (image id, True if its content is new) for each, in order.

    A chunk costs a fixed number of statements, whatever its length: one multi-row image insert,
    one look-up of the contents already known, one seen-file insert (plus 3 per new batch folder).
    `batch_ids` caches folder -> batch id within one transaction, so a folder's batch row is touched
    once. Within the chunk, the first file with some content is the new one, the others duplicates.
    """
    if not files:
        return []
    cache = batch_ids if batch_ids is not None else {}
    for f in files:
        if f.folder not in cache:
            cache[f.folder] = folder_batch(session, site=f.site, folder=f.folder)
    now = utcnow()
    first: dict[str, int] = {}  # sha256 -> index of its first file in the chunk
    for i, f in enumerate(files):
        first.setdefault(f.sha256, i)
    rows = [
        {
            "batch_id": cache[files[i].folder],
            "path": files[i].path,
            "size": files[i].size,
            "sha256": sha,
            "state": State.queued.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for sha, i in first.items()
    ]
    # New only if this statement's insert made the row: two ingesters racing on the same bytes both
    # try, but only one insert wins, so the id is sent to be scored once. RETURNING names exactly
    # the rows this insert made; their sha256 says which file each belongs to.
    table = Image.__table__
    insert = _insert_or_nothing(session, table, ["sha256"]).values(rows)
    made = {sha: int(i) for i, sha in session.execute(insert.returning(table.c.id, table.c.sha256))}
    known = [sha for sha in first if sha not in made]
    ids = dict(made)
    if known:
        ids.update(
            {
                sha: int(i)
                for sha, i in session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(known)))
            }
        )
    session.execute(
        _insert_or_nothing(session, SeenFile.__table__, ["path", "size", "mtime_ns"]),
        [
            {
                "path": f.path,
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "image_id": ids[f.sha256],
                "seen_at": now,
            }
            for f in files
        ],
    )
    return [(ids[f.sha256], first[f.sha256] == i and f.sha256 in made) for i, f in enumerate(files)]


def record_refused_file(session: Session, *, path: str, size: int, mtime_ns: int, reason: str) -> int | None:
    """Record a path that could not even be registered (unreadable, outside the inbox...); its row id."""
    return _insert_ignoring_conflicts(  # type: ignore[no-any-return]
        session,
        SeenFile.__table__,
        {"path": path, "size": size, "mtime_ns": mtime_ns, "reason": reason, "seen_at": utcnow()},
        ["path", "size", "mtime_ns"],
        returning=SeenFile.__table__.c.id,
    )


SUPERSEDED = "superseded: the file changed after it was read, and its new content was taken again"


def supersede_failed(session: Session, paths: Sequence[str]) -> int:
    """Failed images at these paths, which now hold new content, become `superseded`; returns how many.

    A file read while its writer paused (longer than the settle time) fails as truncated; when the
    writer goes on, the new bytes are a new image, and the failed one is no longer a file to fix.
    """
    if not paths:
        return 0
    done = session.execute(
        update(Image)
        .where(Image.path.in_(list(paths)), Image.state == State.failed)
        .values(state=State.superseded, reason=SUPERSEDED, updated_at=utcnow())
    )
    return int(getattr(done, "rowcount", 0) or 0)


def mark_enqueued(session: Session, image_ids: Sequence[int]) -> None:
    """Stamp the time ids were sent to the queue (the sweeper's clock)."""
    if image_ids:
        session.execute(
            update(Image)
            .where(Image.id.in_(image_ids))
            .values(queued_at=utcnow(), attempts=Image.attempts + 1)
        )


def images_to_score(
    session: Session, image_ids: Sequence[int], *, model_version: str
) -> list[tuple[int, str]]:
    """(id, path) of the ids still queued and not yet scored by this model version."""
    scored = select(Prediction.image_id).where(
        Prediction.model_version == model_version, Prediction.image_id.in_(image_ids)
    )
    stmt = (
        select(Image.id, Image.path)
        .where(Image.id.in_(image_ids), Image.state == State.queued, Image.id.not_in(scored))
        .order_by(Image.id)
    )
    return [(i, p) for i, p in session.execute(stmt)]


def save_scores(
    session: Session,
    scores: Mapping[int, FileScore],
    *,
    model_version: str,
    audit_fraction: float = 0.0,
    shadow: bool = False,
) -> None:
    """Insert predictions (the first write wins) and set each image's state, reason and DICOM fields.

    The one write path for scores: first scoring and shadow re-scoring (`ops.rescore`) both come here.
    `scores` maps image ids to their results; flag and threshold are stored as scoring set them.
    Unflagged cases are drawn into their site's audit sample with `audit_fraction` (`sites.audit_ids`:
    seeded per image, so an image unflagged by two versions is an audit case under either).
    With `shadow` (another version scoring images already scored) only the predictions are added: an
    image's state, reason and DICOM fields stay as its first scoring left them, and a file that this
    version could not read adds nothing.
    """
    now = utcnow()
    flagged = {i: bool(s.flagged) for i, s in scores.items() if s.probability is not None}
    audit = sites.audit_ids(session, flagged, fraction=audit_fraction)
    predictions = [
        {
            "image_id": image_id,
            "model_version": model_version,
            "probability": s.probability,
            "flagged": s.flagged,
            "threshold": s.threshold,
            "audit": image_id in audit,
            "created_at": now,
        }
        for image_id, s in scores.items()
        if s.probability is not None
    ]
    if predictions:  # one executemany for the batch
        stmt = _insert_or_nothing(session, Prediction.__table__, ["image_id", "model_version"])
        session.execute(stmt, predictions)
    if shadow:
        return
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for image_id, s in scores.items():
        values: dict[str, Any] = {"updated_at": now}
        if s.format:
            values["format"] = s.format
        if s.dicom:
            # Each DicomInfo field is an image column; values are escaped and fitted to it.
            values.update(dicom_values(dataclasses.asdict(s.dicom)))
        if s.probability is None:
            values.update(state=State.failed.value, reason=s.reason or "unknown failure")
        else:
            values.update(state=State.scored.value, reason=None)
        groups.setdefault(tuple(values), []).append({"image_id": image_id, **values})
    # One executemany per set of columns (a batch of JPEGs: one), not one statement per image.
    table = cast(Table, Image.__table__)
    for columns, rows in groups.items():
        stmt = (
            update(table)
            .where(table.c.id == bindparam("image_id"))
            .values({c: bindparam(c) for c in columns})
        )
        session.execute(stmt, rows)


def still_queued(session: Session, image_ids: Sequence[int]) -> list[int]:
    """Those of `image_ids` still waiting to be scored."""
    if not image_ids:
        return []
    stmt = select(Image.id).where(Image.id.in_(image_ids), Image.state == State.queued).order_by(Image.id)
    return list(session.execute(stmt).scalars())


def stale_queued(session: Session, *, older_than: timedelta, limit: int = 10_000) -> list[int]:
    """Ids still queued whose last enqueue (or registration) is older than `older_than`."""
    cutoff = utcnow() - older_than
    stmt = (
        select(Image.id)
        .where(Image.state == State.queued, func.coalesce(Image.queued_at, Image.created_at) < cutoff)
        .order_by(Image.id)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def never_enqueued(session: Session, *, limit: int = 100_000) -> list[int]:
    """Ids registered but never sent (the ingester stopped between the two steps)."""
    stmt = select(Image.id).where(Image.state == State.queued, Image.queued_at.is_(None)).limit(limit)
    return list(session.execute(stmt).scalars())


def requeue(session: Session, *, state: State, reason: str | None = None) -> list[int]:
    """Put images in `state` (optionally with this reason) back to queued; return their ids."""
    cond = [Image.state == state]
    if reason is not None:
        cond.append(Image.reason == reason)
    ids = list(session.execute(select(Image.id).where(*cond)).scalars())
    if ids:
        session.execute(
            update(Image).where(Image.id.in_(ids)).values(state=State.queued, reason=None, queued_at=None)
        )
    return ids


def latest_prediction() -> Any:
    """Per image, the id (`pid`) of the prediction shown to reviewers, as a subquery.

    That is the promoted model version's prediction (`skinscreen models promote`) where the image has
    one, else its first prediction: a shadow re-score with another version changes nothing that
    reviewers see until that version is promoted.
    """
    promoted = select(ModelPromotion.model_version).order_by(ModelPromotion.id.desc()).limit(1)
    first = (
        select(Prediction.image_id, func.min(Prediction.id).label("first_id"))
        .group_by(Prediction.image_id)
        .subquery()
    )
    chosen = (
        select(Prediction.image_id, func.max(Prediction.id).label("chosen_id"))
        .where(Prediction.model_version == promoted.scalar_subquery())
        .group_by(Prediction.image_id)
        .subquery()
    )
    shown = select(
        first.c.image_id, func.coalesce(chosen.c.chosen_id, first.c.first_id).label("pid")
    ).outerjoin(chosen, chosen.c.image_id == first.c.image_id)
    return shown.subquery()


def shown_flagged_ids() -> Any:
    """Ids of the images whose shown prediction (see `latest_prediction`) is flagged."""
    shown = latest_prediction()
    return (
        select(shown.c.image_id)
        .join(Prediction, Prediction.id == shown.c.pid)
        .where(Prediction.flagged.is_(True))
    )


def status(
    session: Session, *, window: timedelta = timedelta(minutes=10), idle_after: timedelta = IDLE_AFTER
) -> dict[str, Any]:
    """Counts by state, flagged (as reviewers see it: `shown_flagged_ids`), failures by reason, refused
    paths, images scored in the last `window` and the throughput over its busy time (`_throughput`)."""
    by_state = {s.value: 0 for s in State}
    for state, count in session.execute(select(Image.state, func.count()).group_by(Image.state)):
        by_state[State(state).value] = count
    failures = dict(
        session.execute(
            select(Image.reason, func.count())
            .where(Image.state == State.failed)
            .group_by(Image.reason)
            .order_by(func.count().desc())
        ).all()
    )
    refused = dict(
        session.execute(
            select(SeenFile.reason, func.count())
            .where(SeenFile.reason.is_not(None))
            .group_by(SeenFile.reason)
        ).all()
    )
    flagged = session.execute(select(func.count()).select_from(shown_flagged_ids().subquery())).scalar_one()
    count, busy, done = _throughput(session, since=utcnow() - window, idle_after=idle_after)
    return {
        "images": sum(by_state.values()),
        "by_state": by_state,
        "flagged": flagged,
        "failures_by_reason": failures,
        "refused_files": refused,
        "scored_last_window": count,
        "window_seconds": int(window.total_seconds()),
        "busy_seconds": round(busy, 1),
        "throughput_per_second": round(done / busy, 2) if busy > 0 else None,
    }


def _throughput(session: Session, *, since: datetime, idle_after: timedelta) -> tuple[int, float, int]:
    """(images scored since then, busy seconds, images scored in the busy time) from prediction times.

    An image counts once, at its first prediction in the window: a shadow re-score by another version
    is not a second image. The predictions of one stored batch share one time; the gap before a
    batch stored at most `idle_after` after the previous one is busy time spent on that batch, and a
    longer gap is idle time: left out, with that batch's images (whose start it cannot date).
    """
    rows = session.execute(
        select(Prediction.image_id, Prediction.created_at)
        .where(Prediction.created_at >= since)
        .order_by(Prediction.created_at, Prediction.id)
    )
    per_time: dict[datetime, int] = {}
    counted: set[int] = set()
    for image_id, created in rows:
        if image_id not in counted:
            counted.add(image_id)
            per_time[created] = per_time.get(created, 0) + 1
    times = sorted(per_time)
    busy, done = 0.0, 0
    for before, at in zip(times, times[1:], strict=False):
        gap = (at - before).total_seconds()
        if gap <= idle_after.total_seconds():
            busy += gap
            done += per_time[at]
    return len(counted), busy, done
