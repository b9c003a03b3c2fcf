"""The JSON API under /api: cases, images, heatmaps, verdicts, exports, batches; admin routes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError

from skinscreen.db import queries, review_queries
from skinscreen.db.tables import Account, State, utcnow
from skinscreen.errors import ModelError, UnreadableImageError
from skinscreen.review import schemas as s
from skinscreen.review.audit import Action, record
from skinscreen.review.auth import DB, Admin, User, bearer_scheme, context
from skinscreen.review.exports import CASE_COLUMNS, csv_chunks
from skinscreen.review.passwords import hash_password, hash_token, new_token, valid_name, verify_password

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api")
CaseId = Annotated[int, Path(ge=1, le=s.MAX_ID)]
MaxSide = Annotated[int, Query(ge=32, le=2048)]
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {status.HTTP_404_NOT_FOUND: {"description": "no such case"}}


@router.post("/token", tags=["auth"], responses={401: {"description": "wrong name or password"}})
def issue_token(
    session: DB,
    request: Request,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
) -> s.TokenOut:
    """Exchange a name and password (OAuth2 form fields) for a bearer token; only its hash is kept."""
    account = review_queries.account_named(session, username) if valid_name(username) else None
    known = account if account is not None and account.active else None
    matches = verify_password(known.password_hash if known else None, password)  # same time either way
    if known is None or not matches:
        record(session, account_id=account.id if account else None, action=Action.login_failed, detail="api")
        session.commit()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "wrong name or password", headers={"WWW-Authenticate": "Bearer"}
        )
    token = new_token()
    expires = utcnow() + timedelta(hours=context(request).settings.token_hours)
    review_queries.add_token(session, token_hash=hash_token(token), account_id=known.id, expires_at=expires)
    record(session, account_id=known.id, action=Action.token_issued)
    session.commit()
    return s.TokenOut(access_token=token, expires_at=expires)


@router.delete(
    "/token",
    tags=["auth"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        400: {"description": "the request was not made with a bearer token"},
        401: {"description": "not signed in"},
    },
)
def revoke_token(session: DB, user: User, token: Annotated[str | None, Depends(bearer_scheme)]) -> None:
    """Revoke the bearer token this request carries (an API client's sign-out)."""
    if user.via != "token" or token is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "send the token to revoke as Authorization: Bearer")
    review_queries.delete_token(session, hash_token(token))
    record(session, account_id=user.id, action=Action.token_revoked)
    session.commit()


@router.get("/me", tags=["auth"])
def me(user: User) -> s.Me:
    return s.Me(name=user.name, role=user.role)


@router.get("/cases", tags=["cases"])
def list_cases(user: User, session: DB, q: Annotated[s.CaseListQuery, Query()]) -> s.CasePage:
    """Cases matching the filters, one page at a time (default: highest probability first)."""
    rows, total = review_queries.list_cases(
        session,
        q.to_filter(),
        sort=q.sort,
        descending=q.order == "desc",
        offset=(q.page - 1) * q.per_page,
        limit=q.per_page,
    )
    return s.CasePage(items=s.page_of(s.CaseOut, rows), total=total, page=q.page, per_page=q.per_page)


@router.get(
    "/cases.csv",
    tags=["cases"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def export_cases(user: User, session: DB, request: Request, q: Annotated[s.CaseFilterQuery, Query()]) -> Any:
    """Every case matching the filters as CSV (no pagination)."""
    record(session, account_id=user.id, action=Action.export, detail=str(request.url.query)[:1000] or None)
    session.commit()
    sessions = context(request).sessions

    def rows() -> Iterator[str]:
        with sessions() as export_session:
            found = review_queries.iter_cases(
                export_session, q.to_filter(), sort=q.sort, descending=q.order == "desc"
            )
            yield from csv_chunks(found, columns=CASE_COLUMNS)

    headers = {"Content-Disposition": 'attachment; filename="cases.csv"'}
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/cases/{case_id}", tags=["cases"], responses=NOT_FOUND)
def get_case(case_id: CaseId, user: User, session: DB) -> s.CaseDetail:
    """One case: metadata, score, threshold, model version, DICOM UIDs and the verdicts so far."""
    case = review_queries.get_case(session, case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
    record(session, account_id=user.id, action=Action.case_view, image_id=case_id, detail="api")
    session.commit()
    return s.CaseDetail.model_validate(case)


def _file(session: DB, case_id: int) -> tuple[str, str]:
    found = review_queries.image_file(session, case_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
    return found


PNG: Responses = {200: {"content": {"image/png": {}}}, **NOT_FOUND}
PRIVATE_CACHE = {"Cache-Control": "private, max-age=600"}


@router.get("/cases/{case_id}/image.png", tags=["cases"], response_class=Response, responses=PNG)
def case_image(case_id: CaseId, user: User, session: DB, size: MaxSide = 1024) -> Response:
    """The case's image as PNG, its longer side at most `size` pixels."""
    path, _ = _file(session, case_id)
    session.close()
    from skinscreen.review.heatmaps import image_png

    try:
        body = image_png(path, max_side=size)
    except UnreadableImageError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"image unavailable: {exc.reason}") from exc
    return Response(body, media_type="image/png", headers=PRIVATE_CACHE)


@router.get(
    "/cases/{case_id}/heatmap.png",
    tags=["cases"],
    response_class=Response,
    responses={**PNG, 403: {"description": "an audit case before its verdict"}},
)
def case_heatmap(
    case_id: CaseId, user: User, session: DB, request: Request, size: MaxSide = 1024
) -> Response:
    """The image with its Grad-CAM heatmap drawn over it (made on first request, then cached).

    Refused (403) for an audit case until its verdict is given: the map would anchor the reviewer.
    """
    path, sha256 = _file(session, case_id)
    if review_queries.is_blinded(session, case_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "audit case: the heatmap is shown after the verdict")
    session.close()
    store = context(request).heatmaps
    try:
        body = store.overlay_png(path=path, sha256=sha256, max_side=size)
    except UnreadableImageError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"image unavailable: {exc.reason}") from exc
    except ModelError as exc:
        logger.error("heatmaps unavailable: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "heatmaps unavailable") from exc
    return Response(body, media_type="image/png", headers={**PRIVATE_CACHE, "X-Model-Version": store.version})


@router.post(
    "/cases/{case_id}/reviews", tags=["cases"], status_code=status.HTTP_201_CREATED, responses=NOT_FOUND
)
def add_verdict(case_id: CaseId, body: s.VerdictIn, user: User, session: DB) -> s.VerdictOut:
    """Record a verdict (malignant, benign or uncertain, with an optional note); the case leaves the queue."""
    if review_queries.image_file(session, case_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such case")
    review = review_queries.add_review(
        session, image_id=case_id, account_id=user.id, verdict=body.verdict, note=body.note or None
    )
    record(session, account_id=user.id, action=Action.verdict, image_id=case_id, detail=body.verdict.value)
    session.commit()
    return s.VerdictOut(
        id=review.id,
        verdict=review.verdict,
        note=review.note,
        reviewer=user.name,
        created_at=review.created_at,
    )


@router.get("/batches", tags=["batches"])
def list_batches(user: User, session: DB) -> list[s.BatchOut]:
    """Per batch: files, queued, scored, flagged, failed by reason, reviewed."""
    return s.page_of(s.BatchOut, review_queries.batch_summaries(session))


@router.get("/batches/{batch_id}", tags=["batches"], responses={404: {"description": "no such batch"}})
def get_batch(batch_id: Annotated[int, Path(ge=1, le=s.MAX_ID)], user: User, session: DB) -> s.BatchOut:
    found = review_queries.batch_summaries(session, batch_id=batch_id)
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
    return s.BatchOut.model_validate(found[0])


# -- admins ------------------------------------------------------------------------------------------


@router.get("/users", tags=["admin"])
def list_users(admin: Admin, session: DB) -> list[s.AccountOut]:
    return [s.AccountOut.model_validate(a) for a in review_queries.list_accounts(session)]


@router.post(
    "/users",
    tags=["admin"],
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "name taken"}},
)
def add_user(body: s.AccountIn, admin: Admin, session: DB) -> s.AccountOut:
    try:
        account = review_queries.add_account(
            session, name=body.name, role=body.role, password_hash=hash_password(body.password)
        )
    except IntegrityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this name exists") from exc
    record(
        session, account_id=admin.id, action=Action.account_added, detail=f"account {account.id} {body.role}"
    )
    session.commit()
    return s.AccountOut.model_validate(account)


@router.patch("/users/{account_id}", tags=["admin"], responses={404: {"description": "no such account"}})
def change_user(
    account_id: Annotated[int, Path(ge=1, le=s.MAX_ID)], body: s.AccountPatch, admin: Admin, session: DB
) -> s.AccountOut:
    """Change an account's role, deactivate or reactivate it, or set a new password."""
    account = session.get(Account, account_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account")
    changes = body.model_dump(exclude_none=True)
    if body.role is not None:
        account.role = body.role
    if body.active is not None:
        account.active = body.active
    if body.password is not None:
        account.password_hash = hash_password(body.password)
        changes["password"] = "new"
    record(
        session,
        account_id=admin.id,
        action=Action.account_changed,
        detail=f"account {account_id}: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())),
    )
    session.commit()
    return s.AccountOut.model_validate(account)


@router.post("/requeue", tags=["admin"])
def requeue_failed(body: s.RequeueIn, admin: Admin, session: DB) -> s.RequeueOut:
    """Put failed images (all, or those with this exact reason) back in the queue; the sweeper sends them."""
    ids = queries.requeue(session, state=State.failed, reason=body.reason)
    record(session, account_id=admin.id, action=Action.requeue, detail=f"{len(ids)} images")
    session.commit()
    return s.RequeueOut(requeued=len(ids))


@router.get("/audit", tags=["admin"])
def audit_trail(admin: Admin, session: DB, q: Annotated[s.AuditQuery, Query()]) -> s.AuditPage:
    """The audit trail, newest first."""
    rows, total = review_queries.list_events(
        session,
        action=q.action,
        image_id=q.case,
        account=q.account,
        offset=(q.page - 1) * q.per_page,
        limit=q.per_page,
    )
    return s.AuditPage(items=s.page_of(s.AuditEventOut, rows), total=total, page=q.page, per_page=q.per_page)
