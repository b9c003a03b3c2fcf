"""DICOMweb out: results sent with STOW-RS (PS3.18 10.5) to a DICOMweb root such as
`https://pacs.example.org/dicom-web`, as `POST {root}/studies` of multipart/related;
type="application/dicom" bodies, one request per study (split when large).

The PS3.18 response decides each object's state, as a C-STORE status does for the DIMSE sender:
an object in the Referenced SOP Sequence is sent (with the Warning Reason, if any, as its note); one
in the Failed SOP Sequence failed, with its Failure Reason; an object the response names in neither
is sent after a 200 and failed after anything else. No answer, a 408, 429 or 5xx leave every object
of the request pending (retried after the backoff); another 4xx fails them with the status.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
from pydicom.dataset import Dataset

from skinscreen.config import Settings, parse_root
from skinscreen.db.tables import ExportState
from skinscreen.dicomnet import results

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024 * 1024
TIMEOUT = 120.0
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
TRANSIENT_HTTP = frozenset({408, 425, 429})

Outcome = tuple[ExportState, str | None]


def _auth(settings: Settings) -> tuple[dict[str, str], httpx.Auth | None]:
    if settings.dicomweb_token is not None:
        return {"Authorization": f"Bearer {settings.dicomweb_token.get_secret_value()}"}, None
    if settings.dicomweb_username and settings.dicomweb_password is not None:
        return {}, httpx.BasicAuth(settings.dicomweb_username, settings.dicomweb_password.get_secret_value())
    return {}, None


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    """A multipart/related body of DICOM files, and its Content-Type."""
    boundary = secrets.token_hex(16)
    while any(boundary.encode() in p for p in parts):  # a boundary must not occur in a part
        boundary = secrets.token_hex(16)
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _requests(encoded: list[tuple[int, str, str, bytes]]) -> Iterator[list[tuple[int, str, str, bytes]]]:
    """The encoded objects grouped by study, each group cut at MAX_REQUEST_BYTES."""
    by_study: dict[str, list[tuple[int, str, str, bytes]]] = {}
    for item in encoded:
        by_study.setdefault(item[1], []).append(item)
    for items in by_study.values():
        batch: list[tuple[int, str, str, bytes]] = []
        size = 0
        for item in items:
            if batch and size + len(item[3]) > MAX_REQUEST_BYTES:
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += len(item[3])
        yield batch


def _reason(item: dict[str, Any], tag: str) -> int | None:
    value = item.get(tag, {}).get("Value") or [None]
    return int(value[0]) if isinstance(value[0], int | float) else None


def _sequence(body: Any, tag: str) -> dict[str, dict[str, Any]]:
    """SOP Instance UID -> item of one of the response's sequences."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(body, dict):
        return out
    for item in (body.get(tag) or {}).get("Value") or []:
        if isinstance(item, dict):
            uid = (item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or [None])[0]
            if isinstance(uid, str):
                out[uid] = item
    return out


def status_text(code: int | None, what: str) -> str:
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

    if code is None:
        return f"{what} (no reason given)"
    words = STORAGE_SERVICE_CLASS_STATUS.get(code, ("", "unknown status"))[1]
    return f"{what} 0x{code:04X} ({words})"


def judge(status_code: int, body: Any, sop_uids: list[str], root: str) -> dict[str, Outcome]:
    """Each object's outcome from one STOW-RS response (its HTTP status and its JSON body)."""
    if status_code >= 500 or status_code in TRANSIENT_HTTP:
        return {uid: (ExportState.pending, f"{root} answered HTTP {status_code}") for uid in sop_uids}
    stored, failed = _sequence(body, REFERENCED_SOP_SEQUENCE), _sequence(body, FAILED_SOP_SEQUENCE)
    out: dict[str, Outcome] = {}
    for uid in sop_uids:
        if uid in failed:
            out[uid] = (
                ExportState.failed,
                status_text(_reason(failed[uid], FAILURE_REASON), "STOW-RS failure"),
            )
        elif uid in stored:
            warning = _reason(stored[uid], WARNING_REASON)
            out[uid] = (
                ExportState.sent,
                None if warning is None else status_text(warning, "STOW-RS warning"),
            )
        elif status_code == 200:
            out[uid] = (ExportState.sent, None)
        else:
            out[uid] = (ExportState.failed, f"{root} answered HTTP {status_code} and did not list the object")
    return out


def stow(settings: Settings, built: list[tuple[int, Dataset]]) -> dict[int, Outcome]:
    """Send built results to the DICOMweb root in `settings.dicom_destination`; export id -> outcome."""
    assert settings.dicom_destination is not None
    root = parse_root(settings.dicom_destination)
    out: dict[int, Outcome] = {}
    encoded: list[tuple[int, str, str, bytes]] = []
    for export_id, ds in built:
        try:
            encoded.append((export_id, str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), results.encode(ds)))
        except Exception as exc:  # the type only: the message may quote a header value
            out[export_id] = (ExportState.failed, f"the result could not be encoded ({type(exc).__name__})")
    headers, auth = _auth(settings)
    headers["Accept"] = "application/dicom+json"
    verify: Any = str(settings.dicomweb_ca_bundle) if settings.dicomweb_ca_bundle else True
    with httpx.Client(timeout=TIMEOUT, verify=verify, auth=auth, follow_redirects=False) as client:
        for group in _requests(encoded):
            body, content_type = multipart([item[3] for item in group])
            uids = [item[2] for item in group]
            try:
                response = client.post(
                    f"{root}/studies", content=body, headers={**headers, "Content-Type": content_type}
                )
            except httpx.HTTPError as exc:
                error = f"destination {root} unreachable ({type(exc).__name__})"
                out.update({item[0]: (ExportState.pending, error) for item in group})
                continue
            try:
                answer: Any = response.json()
            except ValueError:
                answer = None
            judged = judge(response.status_code, answer, uids, root)
            out.update({item[0]: judged[item[2]] for item in group})
            logger.info("STOW-RS of %d objects to %s: HTTP %d", len(group), root, response.status_code)
    return out
