"""What the API and the page both do, written once: sign in, open a case, record a verdict (each audited)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from skinscreen.db import accounts, cases, verdicts
from skinscreen.db.audit import Action, record
from skinscreen.db.tables import Account, Review, Verdict
from skinscreen.review.auth import Principal
from skinscreen.review.passwords import HashingBusyError, valid_name, verify_password
from skinscreen.review.throttle import SignInThrottle, ThrottledError

logger = logging.getLogger(__name__)


def client_address(request: Request) -> str | None:
    """The caller's address, as the audit trail keeps it (behind a proxy: what `--proxy-headers` gives)."""
    return request.client.host if request.client else None


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    via: str,
    client: str | None,
    throttle: SignInThrottle,
) -> Account | None:
    """The active account with this name and password, or None (audited as a failed sign-in).

    An unknown name costs the same argon2 work as a wrong password and gets the same answers, 401
    and, once throttled (`review.throttle`) or while every argon2 slot is busy, 429 with Retry-After.
    """
    account = accounts.account_named(session, username) if valid_name(username) else None
    try:
        started = throttle.begin(name=username, address=client)
    except ThrottledError as exc:
        logger.warning("sign-in throttled (%s attempt from %s)", via, client)
        _record_refusal(session, account, Action.login_throttled, detail=via, client=client)
        raise _too_many(exc.retry_after) from exc
    known = account if account is not None and account.active else None
    try:
        matches = verify_password(known.password_hash if known else None, password)
    except HashingBusyError as exc:
        _record_refusal(
            session, account, Action.login_throttled, detail=f"{via}, password checks busy", client=client
        )
        raise _too_many(1) from exc
    if known is None or not matches:
        _record_refusal(session, account, Action.login_failed, detail=via, client=client)
        return None
    throttle.succeeded(name=username, address=client, started=started)
    return known


def _record_refusal(
    session: Session, account: Account | None, action: Action, *, detail: str, client: str | None
) -> None:
    """A refused sign-in in the audit trail, committed at once: the refusal itself raises or returns."""
    record(session, account_id=account.id if account else None, action=action, detail=detail, client=client)
    session.commit()


def _too_many(retry_after: int) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        "too many sign-in attempts; try again later",
        headers={"Retry-After": str(retry_after)},
    )


def open_case(
    session: Session, *, case_id: int, user: Principal, via: str, client: str | None
) -> dict[str, Any]:
    """One case with its verdicts; 404 when unknown; the view is audited."""
    case = cases.get_case(session, case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
    record(session, account_id=user.id, action=Action.case_view, image_id=case_id, detail=via, client=client)
    session.commit()
    return case


def give_verdict(
    session: Session,
    *,
    case_id: int,
    user: Principal,
    verdict: Verdict,
    note: str | None,
    client: str | None,
) -> Review:
    """Record a verdict (a note of only blanks is no note); 404 when the case is unknown; audited."""
    if not cases.case_exists(session, case_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
    clean_note = (note or "").strip() or None
    review = verdicts.add_review(
        session, image_id=case_id, account_id=user.id, verdict=verdict, note=clean_note
    )
    record(
        session,
        account_id=user.id,
        action=Action.verdict,
        image_id=case_id,
        detail=verdict.value,
        client=client,
    )
    session.commit()
    return review
