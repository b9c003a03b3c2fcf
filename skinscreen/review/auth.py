"""Who is asking: bearer tokens for the API, signed session cookies (with CSRF tokens) for the page.

A request with `Authorization: Bearer ...` is judged by its token alone. Otherwise the session cookie
(signed by Starlette's SessionMiddleware; HttpOnly, SameSite=Lax) names the account and the account's
session generation at sign-in: signing out, a new password, deactivation or an admin raise the
generation (and delete the account's tokens), which ends every session at once. Every
state-changing request must echo the session's CSRF token in the `X-CSRF-Token` header or the
`csrf_token` form field. Bearer requests need no CSRF token: a browser never adds the header by itself.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from skinscreen.config import Settings
from skinscreen.db import tokens
from skinscreen.db.tables import Account, Role
from skinscreen.review.heatmaps import CaseImages
from skinscreen.review.passwords import hash_token
from skinscreen.review.throttle import SignInThrottle

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class ReviewContext:
    """What every request handler needs, built once by `create_app`."""

    settings: Settings
    sessions: sessionmaker[Session]
    images: CaseImages
    templates: Jinja2Templates
    throttle: SignInThrottle


@dataclass(frozen=True)
class Principal:
    """The signed-in account, and how it proved who it is."""

    id: int
    name: str
    role: Role
    via: str  # "token" or "session"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


class LoginRequiredError(Exception):
    """Raised by page dependencies to send the browser to the login page."""


def context(request: Request) -> ReviewContext:
    return cast(ReviewContext, request.app.state.review)


def db(request: Request) -> Iterator[Session]:
    """A database session for one request; writes are committed by the handler, the rest rolled back."""
    session = context(request).sessions()
    try:
        yield session
    finally:
        session.close()


DB = Annotated[Session, Depends(db)]
bearer_scheme = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def _principal(account: Account, via: str) -> Principal:
    return Principal(id=account.id, name=account.name, role=account.role, via=via)


def _lookup(request: Request, token: str | None) -> Principal | None:
    ctx = context(request)
    with ctx.sessions() as session:
        if token is not None:
            if len(token) > 200:
                return None
            account = tokens.account_for_token(session, hash_token(token))
            return _principal(account, "token") if account else None
        account_id, login_at = request.session.get("account_id"), request.session.get("login_at")
        generation = request.session.get("generation")
        if (
            not isinstance(account_id, int)
            or not isinstance(login_at, int)
            or not isinstance(generation, int)
        ):
            return None
        if time.time() - login_at > ctx.settings.session_hours * 3600:
            return None
        found = session.get(Account, account_id)
        if found is None or not found.active or found.session_generation != generation:
            return None  # signed out, password changed, deactivated, or ended by an admin since
        return _principal(found, "session")


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def verify_csrf(request: Request) -> None:
    expected = request.session.get("csrf")
    given: Any = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(_FORMS):
        given = (await request.form()).get(CSRF_FIELD)
    if (
        not isinstance(expected, str)
        or not isinstance(given, str)
        or not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


async def api_principal(request: Request, token: Annotated[str | None, Depends(bearer_scheme)]) -> Principal:
    """The caller of an API route: a bearer token, or the page's session cookie plus CSRF token."""
    principal = await run_in_threadpool(_lookup, request, token)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not signed in", headers={"WWW-Authenticate": "Bearer"}
        )
    if principal.role == Role.sender:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a sender account may only send DICOM instances")
    if principal.via == "session" and request.method not in SAFE_METHODS:
        await verify_csrf(request)
    return principal


async def api_sender(request: Request, token: Annotated[str | None, Depends(bearer_scheme)]) -> Principal:
    """The caller of the STOW-RS route: a sender account's bearer token (no cookie, so no CSRF)."""
    principal = await run_in_threadpool(_lookup, request, token) if token is not None else None
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not signed in", headers={"WWW-Authenticate": "Bearer"}
        )
    if principal.role != Role.sender:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "senders only")
    return principal


async def api_admin(principal: Annotated[Principal, Depends(api_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
    return principal


async def page_principal(request: Request) -> Principal:
    """The account behind a page request (session cookie only); CSRF checked on every POST."""
    principal = await run_in_threadpool(_lookup, request, None)
    if principal is None or principal.role == Role.sender:
        raise LoginRequiredError
    if request.method not in SAFE_METHODS:
        await verify_csrf(request)
    return principal


async def page_admin(principal: Annotated[Principal, Depends(page_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
    return principal


ApiUser = Annotated[Principal, Depends(api_principal)]
ApiAdmin = Annotated[Principal, Depends(api_admin)]
ApiSender = Annotated[Principal, Depends(api_sender)]
PageUser = Annotated[Principal, Depends(page_principal)]
PageAdmin = Annotated[Principal, Depends(page_admin)]


def sign_in(request: Request, account: Account) -> None:
    """Start a fresh session (new CSRF token) for `account`, valid until its session generation is raised."""
    request.session.clear()
    request.session.update(
        account_id=account.id,
        login_at=int(time.time()),
        generation=account.session_generation,
        csrf=secrets.token_urlsafe(32),
    )


def sign_out(request: Request) -> None:
    request.session.clear()
