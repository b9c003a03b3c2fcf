"""`POST /dicom-web/studies`: STOW-RS from hospital systems, with a sender account's bearer token.

The account names the site as the DICOM listener's calling AE title does (`dicom-<account name>`,
so a sender never writes into a folder site): the instances are staged by
`skinscreen.dicomnet.dicomweb_in` under the first inbox and each study is released into
`inbox/dicom-<account>/<study date>/` once quiet for `SKINSCREEN_DICOM_QUIET_SECONDS`, by a thread
that runs while the app does.
"""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from skinscreen.config import Settings
from skinscreen.dicomnet.dicomweb_in import STAGING, StowRequestError, receive
from skinscreen.dicomnet.listener import StudyStager
from skinscreen.review.auth import ApiSender

logger = logging.getLogger(__name__)

router = APIRouter()
DICOM_JSON = "application/dicom+json"
TOO_LARGE = "the request is larger than this server takes (SKINSCREEN_DICOMWEB_MAX_REQUEST_MB)"


class StowReceiver:
    """The staging area of STOW-RS instances and the thread that releases quiet studies."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.dicomweb_max_request_mb * 1024 * 1024
        inbox = settings.inbox[0] if settings.inbox else None
        self.stager = (
            StudyStager(inbox, quiet_seconds=settings.dicom_quiet_seconds, staging=STAGING) if inbox else None
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.stager is not None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._release, name="stow-release", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop releasing; a study still quiet-waiting stays staged and is released at the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _release(self) -> None:
        assert self.stager is not None
        while not self._stop.wait(0.25):
            self.stager.release_quiet()


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/dicom-web/studies",
    tags=["dicomweb"],
    response_class=JSONResponse,
    responses={
        200: {"description": "every instance stored (ReferencedSOPSequence)"},
        202: {"description": "some stored, some refused (FailedSOPSequence with a FailureReason each)"},
        409: {"description": "every instance refused"},
        415: {"description": 'not multipart/related; type="application/dicom"'},
    },
)
async def store_instances(request: Request, sender: ApiSender) -> JSONResponse:
    """Store DICOM instances (STOW-RS, PS3.18 10.5) for scoring, as the sender account's site."""
    receiver: StowReceiver = request.app.state.stow
    if receiver.stager is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no inbox is configured (SKINSCREEN_INBOX)")
    body = await _body(request, receiver.max_bytes)
    try:
        answer = await run_in_threadpool(
            receive,
            body,
            request.headers.get("content-type", ""),
            site=sender.name,
            stager=receiver.stager,
        )
    except StowRequestError as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
    return JSONResponse(answer.body, status_code=answer.status, media_type=DICOM_JSON)
