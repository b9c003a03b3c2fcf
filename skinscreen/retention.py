"""The retention policy: `skinscreen purge` removes old image files, never what they told us.

With SKINSCREEN_RETENTION_DAYS set, the files of scored cases registered more than that many days ago
are deleted (or moved to SKINSCREEN_ARCHIVE_DIR) once a reviewer has left a verdict, or at once when
no model ever flagged them. A flagged case without a verdict is never purged; the report counts those
flagged as reviewers see them (the rule `status` counts with) apart from those flagged only by
another model version. Nor is an unflagged case drawn into the blinded audit sample purged before
its verdict (the reviewer must still see it). Rows, scores, verdicts and SHA-256 hashes stay, and the
image gets `purged_at`, which the review page shows. A file is only removed when its bytes still hash
to the image's SHA-256, so a path reused for new bytes is left alone.
Since the ingester deduplicates by SHA-256, the same bytes dropped again are a duplicate, not new work.
Only files inside the inbox are touched: a path that is a symlink, or that leads out of the inbox
(SKINSCREEN_INBOX, else the inbox its batch folder was found in) through a symlinked folder, is kept.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from skinscreen import scoredfile
from skinscreen.checksum import sha256_file
from skinscreen.config import Settings
from skinscreen.db.audit import Action, record
from skinscreen.db.queries import shown_flagged_ids
from skinscreen.db.tables import Batch, Image, Prediction, Review, SeenFile, State, utcnow
from skinscreen.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove) and what it kept."""

    retention_days: int
    mode: str  # "delete" or "archive"
    dry_run: bool
    images: int = 0
    files: int = 0
    bytes: int = 0
    missing: int = 0
    kept_flagged_unreviewed: int = 0
    kept_flagged_by_another_version: int = 0
    kept_changed_bytes: int = 0
    kept_audit_unreviewed: int = 0
    kept_outside_inbox: int = 0
    image_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "image_ids"}


def _reviewed() -> Any:
    return exists(select(Review.id).where(Review.image_id == Image.id))


def _ever_flagged() -> Any:
    return exists(select(Prediction.id).where(Prediction.image_id == Image.id, Prediction.flagged.is_(True)))


def _in_audit_sample() -> Any:
    return exists(select(Prediction.id).where(Prediction.image_id == Image.id, Prediction.audit.is_(True)))


def purgeable(session: Session, *, cutoff: datetime) -> list[tuple[int, str, str]]:
    """(id, path, sha256) of scored images registered before `cutoff`, reviewed, or never flagged nor
    drawn into the audit sample."""
    stmt = (
        select(Image.id, Image.path, Image.sha256)
        .where(
            Image.purged_at.is_(None),
            Image.state == State.scored,
            Image.created_at <= cutoff,
            _reviewed() | ~(_ever_flagged() | _in_audit_sample()),
        )
        .order_by(Image.id)
    )
    return [(int(i), str(p), str(s)) for i, p, s in session.execute(stmt)]


def protected_count(session: Session, *, cutoff: datetime) -> tuple[int, int]:
    """Cases without a verdict past the limit that are kept until reviewed: (flagged as reviewers see
    them, by the rule `status` counts with, `queries.shown_flagged_ids`; flagged only by another
    model version, kept too, since a rollback would show that flag again)."""
    waiting = select(Image.id).where(
        Image.purged_at.is_(None), Image.created_at <= cutoff, _ever_flagged(), ~_reviewed()
    )
    shown = waiting.where(Image.id.in_(shown_flagged_ids()))
    count = select(func.count())
    total = int(session.execute(count.select_from(waiting.subquery())).scalar_one())
    flagged = int(session.execute(count.select_from(shown.subquery())).scalar_one())
    return flagged, total - flagged


def audit_protected_count(session: Session, *, cutoff: datetime) -> int:
    """Unflagged cases of the audit sample without a verdict that are past the limit: kept until reviewed."""
    stmt = select(Image.id).where(
        Image.purged_at.is_(None),
        Image.created_at <= cutoff,
        _in_audit_sample(),
        ~_ever_flagged(),
        ~_reviewed(),
    )
    return len(session.execute(stmt).all())


def inside_inbox(path: Path, roots: list[Path]) -> bool:
    """Whether `path` is no symlink and, every folder symlink resolved, lies inside one of `roots`."""
    return not path.is_symlink() and scoredfile.inside(Path(os.path.realpath(path)), roots)


def _batch_roots(session: Session, image_id: int) -> list[Path]:
    """The inbox the image's batch folder was found in (SKINSCREEN_INBOX unset)."""
    found = session.execute(
        select(Batch.folder, Batch.site).join(Image, Image.batch_id == Batch.id).where(Image.id == image_id)
    ).first()
    return scoredfile.inbox_roots(found.folder, found.site) if found else []


def copies(session: Session, image_id: int, path: str) -> list[Path]:
    """Every path the image's bytes were seen under (its first path and later duplicates)."""
    seen = session.execute(select(SeenFile.path).where(SeenFile.image_id == image_id)).scalars()
    return [Path(p) for p in dict.fromkeys([path, *seen])]


def _archive_path(archive: Path, sha256: str, original: Path) -> Path:
    return archive / sha256[:2] / f"{sha256}{original.suffix.lower()}"


def purge(
    session: Session, *, settings: Settings, dry_run: bool = False, now: datetime | None = None
) -> PurgeReport:
    """Apply the retention policy; the caller commits (the audit row goes with the `purged_at` marks)."""
    days = settings.retention_days
    if days is None:
        raise ConfigError("retention is off: set SKINSCREEN_RETENTION_DAYS to purge image files")
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    archive = settings.archive_dir
    report = PurgeReport(retention_days=days, mode="archive" if archive else "delete", dry_run=dry_run)
    report.kept_flagged_unreviewed, report.kept_flagged_by_another_version = protected_count(
        session, cutoff=cutoff
    )
    report.kept_audit_unreviewed = audit_protected_count(session, cutoff=cutoff)
    heatmaps = settings.heatmap_folder()
    for image_id, path, sha256 in purgeable(session, cutoff=cutoff):
        roots = list(settings.inbox) or _batch_roots(session, image_id)
        present = [p for p in copies(session, image_id, path) if p.is_file()]
        outside = [p for p in present if not inside_inbox(p, roots)]
        report.kept_outside_inbox += len(outside)
        present = [p for p in present if p not in outside]
        same = [p for p in present if sha256_file(p) == sha256]
        report.kept_changed_bytes += len(present) - len(same)
        if not same:
            report.missing += 1
        report.images += 1
        report.files += len(same)
        report.bytes += sum(p.stat().st_size for p in same)
        report.image_ids.append(image_id)
        if dry_run:
            continue
        for copy in same:
            if archive is not None:
                target = _archive_path(archive, sha256, copy)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(copy), target)
            else:
                os.remove(copy)
        for cached in heatmaps.glob(f"*/{sha256}.png"):  # Grad-CAM maps of the image go too
            cached.unlink(missing_ok=True)
        session.execute(update(Image).where(Image.id == image_id).values(purged_at=now))
    if not dry_run:
        detail = (
            f"retention {days} days, {report.mode}: {report.images} images, {report.files} files, "
            f"{report.bytes} bytes, {report.missing} already missing, "
            f"{report.kept_flagged_unreviewed} flagged unreviewed kept"
            f" (+{report.kept_flagged_by_another_version} flagged only by another model version), "
            f"{report.kept_audit_unreviewed} audit sample unreviewed kept, "
            f"{report.kept_outside_inbox} outside the inbox kept"
        )
        record(session, account_id=None, action=Action.purge, detail=detail)
        logger.info("purge: %s", detail)
    return report
