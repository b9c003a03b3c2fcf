"""The review page: sign-in, the queue of flagged cases, a case with its heatmap and verdicts, batches, audit.

Server-rendered HTML (Jinja2, autoescaped) with one small script for the heatmap toggle and the keyboard
shortcuts; no build step. URLs carry numeric ids only.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skinscreen.db import review_queries
from skinscreen.db.tables import Verdict
from skinscreen.review import schemas as s
from skinscreen.review.audit import Action, record
from skinscreen.review.auth import DB, PageAdmin, PageUser, Principal, context, csrf_token, sign_in, sign_out
from skinscreen.review.auth import verify_csrf as _verify_csrf
from skinscreen.review.passwords import valid_name, verify_password

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
PER_PAGE = 50
PageNumber = Annotated[int, Query(ge=1, le=s.MAX_PAGE)]
CaseId = Annotated[int, Path(ge=1, le=s.MAX_ID)]


def render(
    request: Request,
    name: str,
    values: dict[str, Any],
    *,
    user: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    values = {"user": user, "csrf": csrf_token(request), **values}
    return context(request).templates.TemplateResponse(request, name, values, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", {"error": None})


@router.post("/login", dependencies=[Depends(_verify_csrf)])
def login(
    request: Request,
    session: DB,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
) -> Response:
    account = review_queries.account_named(session, username) if valid_name(username) else None
    known = account if account is not None and account.active else None
    matches = verify_password(known.password_hash if known else None, password)
    if known is None or not matches:
        record(session, account_id=account.id if account else None, action=Action.login_failed, detail="page")
        session.commit()
        return render(
            request,
            "login.html",
            {"error": "Wrong name or password."},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    sign_in(request, known)
    record(session, account_id=known.id, action=Action.login)
    session.commit()
    return see_other("/")


@router.post("/logout")
def logout(request: Request, user: PageUser, session: DB) -> Response:
    sign_out(request)
    record(session, account_id=user.id, action=Action.logout)
    session.commit()
    return see_other("/login")


@router.get("/")
def queue(request: Request, user: PageUser, session: DB, page: PageNumber = 1) -> HTMLResponse:
    """Flagged cases without a verdict, highest probability first; then the blinded audit sample."""
    rows, total = review_queries.list_cases(
        session, review_queries.QUEUE, offset=(page - 1) * PER_PAGE, limit=PER_PAGE
    )
    audit_rows, audit_total = review_queries.list_cases(
        session, review_queries.AUDIT_QUEUE, sort="id", descending=False, limit=PER_PAGE
    )
    pages = max(1, math.ceil(total / PER_PAGE))
    values = {"rows": rows, "total": total, "page": page, "pages": pages}
    values.update(audit_rows=audit_rows, audit_total=audit_total)
    return render(request, "queue.html", values, user=user)


@router.get("/cases/{case_id}")
def case_view(request: Request, case_id: CaseId, user: PageUser, session: DB) -> HTMLResponse:
    case = review_queries.get_case(session, case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such case.")
    record(session, account_id=user.id, action=Action.case_view, image_id=case_id, detail="page")
    session.commit()
    return render(request, "case.html", {"case": case}, user=user)


@router.post("/cases/{case_id}/verdict")
def add_verdict(
    case_id: CaseId,
    user: PageUser,
    session: DB,
    verdict: Annotated[Verdict, Form()],
    note: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """Record the verdict, then open the next case in the queue (or the empty queue)."""
    if review_queries.image_file(session, case_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such case.")
    clean_note = (note or "").replace("\x00", "").strip() or None
    review_queries.add_review(session, image_id=case_id, account_id=user.id, verdict=verdict, note=clean_note)
    record(session, account_id=user.id, action=Action.verdict, image_id=case_id, detail=verdict.value)
    session.commit()
    following = review_queries.first_in_queue(session)
    return see_other(f"/cases/{following}" if following is not None else "/")


@router.get("/batches")
def batches(request: Request, user: PageUser, session: DB) -> HTMLResponse:
    from skinscreen.sites.report import batch_drift, model_info, note_warnings

    drift = batch_drift(session, model=model_info(context(request).settings.model))
    note_warnings(session, drift)
    session.commit()
    values = {"batches": review_queries.batch_summaries(session), "drift": {d["batch"]: d for d in drift}}
    return render(request, "batches.html", values, user=user)


@router.get("/audit")
def audit(request: Request, user: PageAdmin, session: DB, page: PageNumber = 1) -> HTMLResponse:
    events, total = review_queries.list_events(session, offset=(page - 1) * 100, limit=100)
    pages = max(1, math.ceil(total / 100))
    return render(
        request, "audit.html", {"events": events, "total": total, "page": page, "pages": pages}, user=user
    )
