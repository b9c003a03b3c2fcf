"""The audit trail: every case view, verdict, sign-in and admin action, one append-only row each.

Rows carry account and image ids, never file paths or patient identifiers; so do the log lines.
"""

from __future__ import annotations

import enum
import logging

from sqlalchemy.orm import Session

from skinscreen.db import review_queries

logger = logging.getLogger(__name__)


class Action(enum.StrEnum):
    """What an audit row records."""

    login = "login"
    login_failed = "login_failed"
    logout = "logout"
    token_issued = "token_issued"
    token_revoked = "token_revoked"
    case_view = "case_view"
    verdict = "verdict"
    export = "export"
    account_added = "account_added"
    account_changed = "account_changed"
    requeue = "requeue"
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
) -> None:
    """Add one audit row to the session's transaction (the caller commits with its own change)."""
    review_queries.add_event(
        session, account_id=account_id, action=action.value, image_id=image_id, detail=detail
    )
    if image_id is None:
        logger.info("audit: %s by account %s", action.value, account_id)
    else:
        logger.info("audit: %s of case %d by account %s", action.value, image_id, account_id)
