"""The audit trail: every case, image and heatmap view, verdict, sign-in, export and admin action.

A page view is one row: a queue page names the cases whose thumbnails it shows, and the images a page
shows (the thumbnails, a case page's image) add no row of their own (`shown_on_a_page`).

One append-only row each (the database refuses UPDATE, DELETE and TRUNCATE). Rows carry account and
image ids and, for web actions, the client address; never file paths or patient identifiers, and
neither do the log lines.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from skinscreen.db.tables import Account, AuditEvent, utcnow

logger = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What an audit row records."""

    login = "login"
    login_failed = "login_failed"
    login_throttled = "login_throttled"
    logout = "logout"
    token_issued = "token_issued"
    token_revoked = "token_revoked"
    sessions_ended = "sessions_ended"
    queue_view = "queue_view"
    case_view = "case_view"
    image_view = "image_view"
    heatmap_view = "heatmap_view"
    file_changed = "file_changed"
    verdict = "verdict"
    export = "export"
    account_added = "account_added"
    account_changed = "account_changed"
    requeue = "requeue"
    # Operations (skinscreen.ops, skinscreen.retention, skinscreen.db.backup), done from the CLI.
    model_installed = "model_installed"
    rescore = "rescore"
    model_promoted = "model_promoted"
    purge = "purge"
    backup = "backup"
    restore = "restore"
    # Sites (skinscreen.sites): operating points changed, cases re-decided, drift noticed.
    site_calibrated = "site_calibrated"
    site_cleared = "site_cleared"
    site_reflagged = "site_reflagged"
    drift_warning = "drift_warning"


def record(
    session: Session,
    *,
    account_id: int | None,
    action: Action,
    image_id: int | None = None,
    detail: str | None = None,
    client: str | None = None,
) -> None:
    """Add one audit row to the session's transaction (the caller commits with its own change)."""
    session.add(
        AuditEvent(
            account_id=account_id,
            action=action.value,
            image_id=image_id,
            detail=detail,
            client=client[:100] if client else None,
            created_at=utcnow(),
        )
    )
    if image_id is None:
        logger.info("audit: %s by account %s", action.value, account_id)
    else:
        logger.info("audit: %s of case %d by account %s", action.value, image_id, account_id)


PAGE_IMAGES_WITHIN = timedelta(minutes=10)
"""How long after a page view the images it shows are loaded without an audit row each."""


def queue_view(
    session: Session, *, account_id: int, case_ids: Sequence[int], page: int, client: str | None
) -> None:
    """One row for a queue page view, naming the cases whose thumbnails it shows."""
    detail = json.dumps({"page": page, "cases": list(case_ids)})
    record(session, account_id=account_id, action=Action.queue_view, detail=detail, client=client)


def shown_on_a_page(
    session: Session, *, account_id: int, image_id: int, within: timedelta = PAGE_IMAGES_WITHIN
) -> bool:
    """Whether this account viewed, within `within`, a page showing this case's image: the case itself
    (`case_view`) or a queue page listing it (`queue_view`). That row audits the image; a request not
    covered by one (an image fetched on its own) gets a row of its own."""
    since = utcnow() - within
    mine = (AuditEvent.account_id == account_id, AuditEvent.created_at >= since)
    case = select(AuditEvent.id).where(*mine, AuditEvent.action == Action.case_view.value)
    if session.execute(case.where(AuditEvent.image_id == image_id).limit(1)).first() is not None:
        return True
    queues = session.execute(  # the LIKE only narrows the rows parsed; the JSON decides
        select(AuditEvent.detail).where(
            *mine, AuditEvent.action == Action.queue_view.value, AuditEvent.detail.like(f"%{image_id}%")
        )
    )
    return any(image_id in json.loads(detail or "{}").get("cases", []) for (detail,) in queues)


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
            "client": e.client,
            "created_at": e.created_at,
        }
        for e, name in session.execute(page)
    ]
    return rows, int(total)
