"""The audit trail: every case, image and heatmap view, verdict, sign-in, export and admin action.

One append-only row each (the database refuses UPDATE, DELETE and TRUNCATE). Rows carry account and
image ids and, for web actions, the client address; never file paths or patient identifiers, and
neither do the log lines.
"""

from __future__ import annotations

import enum
import logging
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
