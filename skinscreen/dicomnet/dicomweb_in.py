"""DICOMweb in: the instances of one STOW-RS request (PS3.18 10.5), judged one by one and staged
like the DICOM listener's (the same `StudyStager`, in its own hidden folder), with the PS3.18 answer.

Each part of the multipart/related body must be a DICOM Part 10 file of a photograph SOP class (the
ones `skinscreen.images` scores). The answer lists stored instances in the Referenced SOP Sequence
and refused ones in the Failed SOP Sequence with a Failure Reason: 0xC000 (not a DICOM file, or no
SOP instance UID), 0x0122 (SOP class not supported), 0xA700 (the inbox cannot take it). HTTP 200
when every instance was stored, 202 when some were, 409 when none was.

Header values never reach a log: the site and counts only.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pydicom
from pydicom import config as dicom_config
from pydicom.dataset import Dataset

from skinscreen.dicomnet.listener import StudyStager, study_date_folder
from skinscreen.images import PHOTO_SOP_CLASSES

logger = logging.getLogger(__name__)

STAGING = ".dicomweb-incoming"
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700


class StowRequestError(ValueError):
    """Raised when a STOW-RS request as a whole is malformed (not multipart/related of DICOM)."""


@dataclass(frozen=True)
class Answer:
    """The HTTP status and the application/dicom+json body of a STOW-RS response."""

    status: int
    body: dict[str, Any]
    stored: int
    failed: int


def parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The (content type, bytes) of each part of a multipart/related body of DICOM files."""
    header = Message()
    header["content-type"] = content_type
    declared = str(header.get_param("type") or "application/dicom").lower()
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/related" or not isinstance(boundary, str) or not boundary:
        raise StowRequestError('send multipart/related; type="application/dicom" with a boundary')
    if declared != "application/dicom":
        raise StowRequestError(f'only type="application/dicom" is accepted, not {declared[:50]!r}')
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    out: list[tuple[str, bytes]] = []
    for chunk in chunks[1:]:  # the first is the preamble
        if chunk.startswith(b"--"):
            break  # the close delimiter: the rest is the epilogue
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            out.append(("", b""))
            continue
        part = Message()
        for line in head.decode("latin-1").split("\r\n")[1:]:  # the first holds what followed the boundary
            name, colon, value = line.partition(":")
            if colon:
                part[name.strip()] = value.strip()
        out.append((part.get_content_type() if part["content-type"] else declared, content))
    if not out:
        raise StowRequestError("the request holds no DICOM instance")
    return out


def _item(sop_class: str, sop_uid: str, reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    if reason is not None:
        item.FailureReason = reason
    return item


def receive(body: bytes, content_type: str, *, site: str, stager: StudyStager) -> Answer:
    """Judge and stage every instance of a STOW-RS request from `site`; StowRequestError when the
    request as a whole is malformed."""
    # pydicom's warnings and value checks quote the values they object to: none may reach a log.
    with warnings.catch_warnings(), dicom_config.disable_value_validation():
        warnings.simplefilter("ignore")
        return _receive(body, content_type, site=site, stager=stager)


def _receive(body: bytes, content_type: str, *, site: str, stager: StudyStager) -> Answer:
    stored: list[Dataset] = []
    failed: list[Dataset] = []
    for part_type, data in parts(body, content_type):
        if part_type != "application/dicom":
            failed.append(_item("", "", CANNOT_UNDERSTAND))
            continue
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            sop_class = str(ds.SOPClassUID)
            sop_uid = str(ds.SOPInstanceUID)
            study_uid = str(ds.get("StudyInstanceUID", "") or "")
            study_date = study_date_folder(ds.get("StudyDate"))
        except Exception:  # not a DICOM file, or one without its SOP identity: the type says enough
            failed.append(_item("", "", CANNOT_UNDERSTAND))
            continue
        if sop_class not in PHOTO_SOP_CLASSES:
            failed.append(_item(sop_class, sop_uid, SOP_CLASS_NOT_SUPPORTED))
            continue
        try:
            stager.store(data, calling_ae=site, study_uid=study_uid, study_date=study_date, sop_uid=sop_uid)
        except OSError as exc:
            logger.error("cannot stage an instance sent by %s: %s", site, exc.strerror or type(exc).__name__)
            failed.append(_item(sop_class, sop_uid, OUT_OF_RESOURCES))
            continue
        stored.append(_item(sop_class, sop_uid))
    answer = Dataset()
    if stored:
        answer.ReferencedSOPSequence = stored
    if failed:
        answer.FailedSOPSequence = failed
    status = 200 if not failed else 202 if stored else 409
    logger.info("STOW-RS from %s: %d stored, %d refused", site, len(stored), len(failed))
    return Answer(status=status, body=answer.to_json_dict(), stored=len(stored), failed=len(failed))
