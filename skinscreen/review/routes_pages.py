"""The review page: sign-in, the queue of flagged cases, a case with its heatmap and verdicts, batches, audit.

Server-rendered HTML (Jinja2, autoescaped) with one small script for the heatmap toggle and the keyboard
shortcuts; no build step. URLs carry numeric ids only.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skinscreen.db import accounts, cases
from skinscreen.db.audit import Action, list_events, queue_view, record
from skinscreen.db.batches import batch_summaries
from skinscreen.db.cases import MAX_ID
from skinscreen.db.tables import Verdict
from skinscreen.review.actions import authenticate, client_address, give_verdict, open_case
from skinscreen.review.auth import DB, PageAdmin, PageUser, Principal, context, csrf_token, sign_in, sign_out
from skinscreen.review.auth import verify_csrf as _verify_csrf
from skinscreen.review.schemas import MAX_PAGE

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
PER_PAGE = 50
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
CaseId = Annotated[int, Path(ge=1, le=MAX_ID)]


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
    known = authenticate(
        session,
        username=username,
        password=password,
        via="page",
        client=client_address(request),
        throttle=context(request).throttle,
    )
    if known is None:
        return render(
            request,
            "login.html",
            {"error": "Wrong name or password."},
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    sign_in(request, known)
    record(session, account_id=known.id, action=Action.login, client=client_address(request))
    session.commit()
    return see_other("/")


@router.post("/logout")
def logout(request: Request, user: PageUser, session: DB) -> Response:
    """Sign out everywhere: every session and API token of the account ends, not only this cookie."""
    sign_out(request)
    accounts.end_sessions(session, user.id)
    record(session, account_id=user.id, action=Action.logout, client=client_address(request))
    session.commit()
    return see_other("/login")


@router.get("/")
def queue(request: Request, user: PageUser, session: DB, page: PageNumber = 1) -> HTMLResponse:
    """Flagged cases without a verdict, highest probability first; then the blinded audit sample."""
    rows, total = cases.list_cases(session, cases.QUEUE, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    audit_rows, audit_total = cases.list_cases(
        session, cases.AUDIT_QUEUE, sort="id", descending=False, limit=PER_PAGE
    )
    pages = max(1, math.ceil(total / PER_PAGE))
    shown = [int(r["id"]) for r in rows + audit_rows]
    queue_view(session, account_id=user.id, case_ids=shown, page=page, client=client_address(request))
    session.commit()
    values = {"rows": rows, "total": total, "page": page, "pages": pages}
    values.update(audit_rows=audit_rows, audit_total=audit_total)
    return render(request, "queue.html", values, user=user)


@router.get("/cases/{case_id}")
def case_view(request: Request, case_id: CaseId, user: PageUser, session: DB) -> HTMLResponse:
    case = open_case(session, case_id=case_id, user=user, via="page", client=client_address(request))
    version = case["model_version"]
    if version is None:
        no_heatmap = "Not scored yet: no heatmap."
    elif not context(request).images.heatmaps.knows(version):
        no_heatmap = (
            f"No heatmap: the model that scored this case ({version}) is not available on this server."
        )
    else:
        no_heatmap = None
    return render(request, "case.html", {"case": case, "no_heatmap": no_heatmap}, user=user)


@router.post("/cases/{case_id}/verdict")
def add_verdict(
    request: Request,
    case_id: CaseId,
    user: PageUser,
    session: DB,
    verdict: Annotated[Verdict, Form()],
    note: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    """Record the verdict, then open the next case in the queue (or the empty queue)."""
    # Form fields cannot be refused field by field as JSON bodies are; NUL simply goes.
    give_verdict(
        session,
        case_id=case_id,
        user=user,
        verdict=verdict,
        note=(note or "").replace("\x00", ""),
        client=client_address(request),
    )
    following = cases.first_in_queue(session)
    return see_other(f"/cases/{following}" if following is not None else "/")


@router.get("/batches")
def batches(request: Request, user: PageUser, session: DB) -> HTMLResponse:
    from skinscreen.sites.report import batch_drift, in_force_info

    # A read: drift warnings were recorded when the batches were scored (skinscreen.sites.report).
    drift = batch_drift(session, model=in_force_info(session, settings=context(request).settings))
    values = {"batches": batch_summaries(session), "drift": {d["batch"]: d for d in drift}}
    return render(request, "batches.html", values, user=user)


@router.get("/audit")
def audit(request: Request, user: PageAdmin, session: DB, page: PageNumber = 1) -> HTMLResponse:
    events, total = list_events(session, offset=(page - 1) * 100, limit=100)
    pages = max(1, math.ceil(total / 100))
    return render(
        request, "audit.html", {"events": events, "total": total, "page": page, "pages": pages}, user=user
    )
