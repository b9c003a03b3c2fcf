"""The JSON API under /api: cases, images, heatmaps, verdicts, exports, batches; admin routes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError, ProgrammingError

from skinscreen.db import accounts, batches, cases, queries, tokens
from skinscreen.db.audit import Action, list_events, record, shown_on_a_page
from skinscreen.db.cases import MAX_ID, CaseFile
from skinscreen.db.tables import Account, Role, State, utcnow
from skinscreen.errors import FileChangedError, ModelError, ModelUnavailableError, UnreadableImageError
from skinscreen.review import schemas
from skinscreen.review.actions import authenticate, client_address, give_verdict, open_case
from skinscreen.review.auth import DB, ApiAdmin, ApiUser, Principal, bearer_scheme, context
from skinscreen.review.exports import CASE_COLUMNS, csv_chunks, for_reviewers
from skinscreen.review.passwords import HashingBusyError, hash_password, hash_token, new_token

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api")
CaseId = Annotated[int, Path(ge=1, le=MAX_ID)]
MaxSide = Annotated[int, Query(ge=32, le=2048)]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {status.HTTP_404_NOT_FOUND: {"description": "no such case"}}


@router.post("/token", tags=["auth"], responses={401: {"description": "wrong name or password"}})
def issue_token(
    session: DB,
    request: Request,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
) -> schemas.TokenOut:
    """Exchange a name and password (OAuth2 form fields) for a bearer token; only its hash is kept."""
    known = authenticate(
        session,
        username=username,
        password=password,
        via="api",
        client=client_address(request),
        throttle=context(request).throttle,
    )
    if known is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong name or password", headers={"WWW-Authenticate": "Bearer"}
        )
    token = new_token()
    expires = utcnow() + timedelta(hours=context(request).settings.token_hours)
    tokens.add_token(session, token_hash=hash_token(token), account_id=known.id, expires_at=expires)
    record(session, account_id=known.id, action=Action.token_issued, client=client_address(request))
    session.commit()
    return schemas.TokenOut(access_token=token, expires_at=expires)


@router.delete(
    "/token",
    tags=["auth"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        400: {"description": "the request was not made with a bearer token"},
        401: {"description": "not signed in"},
    },
)
def revoke_token(
    session: DB, user: ApiUser, request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> None:
    """Revoke the bearer token this request carries (an API client's sign-out)."""
    if user.via != "token" or token is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "send the token to revoke as Authorization: Bearer")
    tokens.delete_token(session, hash_token(token))
    record(session, account_id=user.id, action=Action.token_revoked, client=client_address(request))
    session.commit()


@router.get("/me", tags=["auth"])
def me(user: ApiUser) -> schemas.Me:
    return schemas.Me(name=user.name, role=user.role)


@router.get("/cases", tags=["cases"])
def list_cases(user: ApiUser, session: DB, q: Annotated[schemas.CaseListQuery, Query()]) -> schemas.CasePage:
    """Cases matching the filters, one page at a time (default: highest probability first)."""
    rows, total = cases.list_cases(
        session,
        q,
        sort=q.sort,
        descending=q.order == "desc",
        offset=(q.page - 1) * q.per_page,
        limit=q.per_page,
    )
    return schemas.CasePage(
        items=schemas.page_of(schemas.CaseOut, rows), total=total, page=q.page, per_page=q.per_page
    )


@router.get(
    "/cases.csv",
    tags=["cases"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def export_cases(
    user: ApiUser, session: DB, request: Request, q: Annotated[schemas.CaseQuery, Query()]
) -> Any:
    """Every case matching the filters as CSV (no pagination); paths from the site folder on."""
    record(
        session,
        account_id=user.id,
        action=Action.export,
        detail=str(request.url.query)[:1000] or None,
        client=client_address(request),
    )
    session.commit()
    sessions = context(request).sessions

    def rows() -> Iterator[str]:
        with sessions() as export_session:
            found = cases.iter_cases(export_session, q, sort=q.sort, descending=q.order == "desc")
            yield from csv_chunks(for_reviewers(found), columns=CASE_COLUMNS)

    headers = {"Content-Disposition": 'attachment; filename="cases.csv"'}
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/cases/{case_id}", tags=["cases"], responses=NOT_FOUND)
def get_case(case_id: CaseId, user: ApiUser, session: DB, request: Request) -> schemas.CaseDetail:
    """One case: metadata, score, threshold, model version, DICOM UIDs and the verdicts so far."""
    case = open_case(session, case_id=case_id, user=user, via="api", client=client_address(request))
    return schemas.CaseDetail.model_validate(case)


def _case_file(session: DB, case_id: int) -> CaseFile:
    found = cases.case_file(session, case_id)
    session.close()  # decoding and Grad-CAM take a while; hold no connection meanwhile
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
    return found


def _serve_png(
    session: DB,
    request: Request,
    *,
    user: Principal,
    case: CaseFile,
    action: Action,
    draw: Callable[[], tuple[bytes, dict[str, str]]],
) -> Response:
    """Draw a case's PNG (404 unreadable, 409 changed since scored: then the case is marked); audited."""
    client = client_address(request)
    try:
        body, headers = draw()
    except UnreadableImageError as exc:
        # One answer for missing, unreadable and outside the inbox: nothing about other paths leaks.
        raise HTTPException(status.HTTP_404_NOT_FOUND, "image unavailable") from exc
    except FileChangedError as exc:
        cases.mark_file_changed(session, case.image_id)
        record(session, account_id=user.id, action=Action.file_changed, image_id=case.image_id, client=client)
        session.commit()
        logger.warning("case %d: file changed since it was scored", case.image_id)
        raise HTTPException(status.HTTP_409_CONFLICT, "file changed since it was scored") from exc
    if action is not Action.image_view or not shown_on_a_page(
        session, account_id=user.id, image_id=case.image_id
    ):
        record(session, account_id=user.id, action=action, image_id=case.image_id, client=client)
        session.commit()
    return Response(body, media_type="image/png", headers={**NO_STORE, **headers})


PNG: Responses = {
    200: {"content": {"image/png": {}}},
    409: {"description": "the file changed since it was scored"},
    **NOT_FOUND,
}
NO_STORE = {"Cache-Control": "no-store"}  # patient images stay out of browser and proxy caches


@router.get("/cases/{case_id}/image.png", tags=["cases"], response_class=Response, responses=PNG)
def case_image(
    case_id: CaseId, user: ApiUser, session: DB, request: Request, size: MaxSide = 1024
) -> Response:
    """The case's image as PNG, its longer side at most `size` pixels (audited as an image view, unless
    a page view of this account in the last minutes showed it: the case page or a queue page)."""
    case = _case_file(session, case_id)
    images = context(request).images
    return _serve_png(
        session,
        request,
        user=user,
        case=case,
        action=Action.image_view,
        draw=lambda: (images.image_png(case, max_side=size), {}),
    )


@router.get(
    "/cases/{case_id}/heatmap.png",
    tags=["cases"],
    response_class=Response,
    responses={**PNG, 403: {"description": "an audit case before its verdict"}},
)
def case_heatmap(
    case_id: CaseId, user: ApiUser, session: DB, request: Request, size: MaxSide = 1024
) -> Response:
    """The image with the Grad-CAM heatmap of the model version that scored it (made once, then cached).

    404 when the case has no score yet, or when that model version is not available on this server;
    403 for an audit case until its verdict is given: the map would anchor the reviewer.
    """
    case = _case_file(session, case_id)
    if case.model_version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the case has no score yet, so no heatmap")
    if cases.is_blinded(session, case_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "audit case: the heatmap is shown after the verdict")
    images = context(request).images

    def draw() -> tuple[bytes, dict[str, str]]:
        body, version = images.overlay_png(case, max_side=size)
        return body, {"X-Model-Version": version}

    try:
        return _serve_png(session, request, user=user, case=case, action=Action.heatmap_view, draw=draw)
    except ModelUnavailableError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no heatmap: {exc}") from exc
    except ModelError as exc:
        logger.error("heatmaps unavailable: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "heatmaps unavailable") from exc


@router.post(
    "/cases/{case_id}/reviews", tags=["cases"], status_code=status.HTTP_201_CREATED, responses=NOT_FOUND
)
def add_verdict(
    case_id: CaseId, body: schemas.VerdictIn, user: ApiUser, session: DB, request: Request
) -> schemas.VerdictOut:
    """Record a verdict (malignant, benign or uncertain, with an optional note); the case leaves the queue."""
    review = give_verdict(
        session,
        case_id=case_id,
        user=user,
        verdict=body.verdict,
        note=body.note,
        client=client_address(request),
    )
    return schemas.VerdictOut(
        id=review.id,
        verdict=review.verdict,
        note=review.note,
        reviewer=user.name,
        created_at=review.created_at,
    )


@router.get("/batches", tags=["batches"])
def list_batches(user: ApiUser, session: DB) -> list[schemas.BatchOut]:
    """Per batch: files, queued, scored, flagged, failed by reason, reviewed."""
    return schemas.page_of(schemas.BatchOut, batches.batch_summaries(session))


@router.get("/batches/{batch_id}", tags=["batches"], responses={404: {"description": "no such batch"}})
def get_batch(
    batch_id: Annotated[int, Path(ge=1, le=MAX_ID)], user: ApiUser, session: DB
) -> schemas.BatchOut:
    found = batches.batch_summaries(session, batch_id=batch_id)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
    return schemas.BatchOut.model_validate(found[0])


# -- admins ------------------------------------------------------------------------------------------


def _new_password_hash(password: str) -> str:
    """The argon2 hash of a new password; 503 with Retry-After while every argon2 slot stays busy."""
    try:
        return hash_password(password)
    except HashingBusyError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "passwords are being checked; try again shortly",
            headers={"Retry-After": "1"},
        ) from exc


@router.get("/users", tags=["admin"])
def list_users(admin: ApiAdmin, session: DB) -> list[schemas.AccountOut]:
    return [schemas.AccountOut.model_validate(a) for a in accounts.list_accounts(session)]


@router.post(
    "/users",
    tags=["admin"],
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "the server's database role may not make admins"},
        409: {"description": "name taken"},
        503: {"description": "password hashing busy"},
    },
)
def add_user(body: schemas.AccountIn, admin: ApiAdmin, session: DB, request: Request) -> schemas.AccountOut:
    try:
        account = accounts.add_account(
            session, name=body.name, role=body.role, password_hash=_new_password_hash(body.password)
        )
    except IntegrityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this name exists") from exc
    except ProgrammingError as exc:
        raise _owner_only(exc) from exc
    record(
        session,
        account_id=admin.id,
        action=Action.account_added,
        detail=f"account {account.id} {body.role}",
        client=client_address(request),
    )
    session.commit()
    return schemas.AccountOut.model_validate(account)


def _owner_only(exc: ProgrammingError) -> HTTPException:
    """The database refused the services' role making an admin (skinscreen.db.guards): 403."""
    if getattr(exc.orig, "sqlstate", None) != "42501":
        raise exc
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        "admins are made by the database owner: skinscreen users add NAME --role admin",
    )


ACCOUNT_RESPONSES: Responses = {
    403: {"description": "the server's database role may not make admins"},
    404: {"description": "no such account"},
    409: {"description": "it would leave no active admin"},
    503: {"description": "password hashing busy"},
}


@router.patch("/users/{account_id}", tags=["admin"], responses=ACCOUNT_RESPONSES)
def change_user(
    account_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: schemas.AccountPatch,
    admin: ApiAdmin,
    session: DB,
    request: Request,
) -> schemas.AccountOut:
    """Change an account's role, deactivate or reactivate it, or set a new password.

    A new password or a deactivation ends every session and token of the account. The last active
    admin can be neither deactivated nor made a reviewer.
    """
    admins_left = accounts.other_active_admins(session, account_id)  # locks the admins' rows first
    account = session.get(Account, account_id, populate_existing=True)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account")
    stays_admin = body.role in (None, Role.admin) and body.active in (None, True)
    last_admin = account.role == Role.admin and account.active and not stays_admin
    if last_admin and admins_left == 0:
        raise HTTPException(status.HTTP_409_CONFLICT, "this is the last active admin")
    changes = body.model_dump(exclude_none=True)
    if body.role is not None:
        account.role = body.role
    if body.active is not None:
        account.active = body.active
    if body.password is not None:
        account.password_hash = _new_password_hash(body.password)
        changes["password"] = "new"
    try:
        session.flush()
    except ProgrammingError as exc:
        raise _owner_only(exc) from exc
    if body.password is not None or body.active is False:
        accounts.end_sessions(session, account.id)
    record(
        session,
        account_id=admin.id,
        action=Action.account_changed,
        detail=f"account {account_id}: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())),
        client=client_address(request),
    )
    session.commit()
    return schemas.AccountOut.model_validate(account)


@router.delete(
    "/users/{account_id}/sessions",
    tags=["admin"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such account"}},
)
def end_user_sessions(
    account_id: Annotated[int, Path(ge=1, le=MAX_ID)], admin: ApiAdmin, session: DB, request: Request
) -> None:
    """End every page session and API token of an account (it signs in again)."""
    if session.get(Account, account_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account")
    accounts.end_sessions(session, account_id)
    record(
        session,
        account_id=admin.id,
        action=Action.sessions_ended,
        detail=f"account {account_id}",
        client=client_address(request),
    )
    session.commit()


@router.post("/requeue", tags=["admin"])
def requeue_failed(
    body: schemas.RequeueIn, admin: ApiAdmin, session: DB, request: Request
) -> schemas.RequeueOut:
    """Put failed images (all, or those with this exact reason) back in the queue; the sweeper sends them."""
    ids = queries.requeue(session, state=State.failed, reason=body.reason)
    record(
        session,
        account_id=admin.id,
        action=Action.requeue,
        detail=f"{len(ids)} images",
        client=client_address(request),
    )
    session.commit()
    return schemas.RequeueOut(requeued=len(ids))


@router.get("/audit", tags=["admin"])
def audit_trail(admin: ApiAdmin, session: DB, q: Annotated[schemas.AuditQuery, Query()]) -> schemas.AuditPage:
    """The audit trail, newest first."""
    rows, total = list_events(
        session,
        action=q.action,
        image_id=q.case,
        account=q.account,
        offset=(q.page - 1) * q.per_page,
        limit=q.per_page,
    )
    return schemas.AuditPage(
        items=schemas.page_of(schemas.AuditEventOut, rows), total=total, page=q.page, per_page=q.per_page
    )
