"""`skinscreen dicom-listen`: a C-ECHO and C-STORE SCP that files received images into the inbox.

Each instance is written under a hidden staging folder of the inbox (`.dicom-incoming/<AE>/<study>/`,
which the ingester skips), as a temporary `.part` file renamed once complete. A study moves into
`inbox/<calling AE>/<study date>/` once no instance of it has arrived for `dicom_quiet_seconds`, so
the ingester takes the whole study at once, with the calling AE title as the site.

Photographs only (the SOP classes `skinscreen.images` scores): any other storage SOP class is
accepted at association time but its C-STORE is refused with status 0x0122 (SOP class not
supported), which a sender reports per object. With `--allow`, an unknown calling AE title is
rejected at association time (rejected-permanent, "calling AE title not recognised").

Every site made here is `dicom-<calling AE>` (`address.network_site`): a sender cannot file its
images under a folder site's name. Connections and associations are bounded (`dicom_*` settings):
a connection that sends no association request within the ACSE timeout is dropped, an association
silent for the network timeout is aborted, at most `dicom_max_associations` run at once, and an
instance larger than `dicom_max_store_bytes` is refused (0xA700) before it is decoded. A data set
that does not parse, or that does not name the SOP class and instance its C-STORE announces, is
answered 0xC000 (cannot understand) and not stored.

Header values never reach a log: only status codes, counts and the calling AE title.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.presentation import StoragePresentationContexts

from skinscreen.dicomnet.address import NETWORK_SITE_PREFIX, network_site, study_folder
from skinscreen.images import PHOTO_SOP_CLASSES

logger = logging.getLogger(__name__)

STAGING = ".dicom-incoming"
VERIFICATION = "1.2.840.10008.1.1"
STATUS_SUCCESS = 0x0000
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
_UNCOMPRESSED = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old devices)
]
_COMPRESSED = [
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]


def decodable_syntaxes() -> list[str]:
    """Uncompressed syntaxes plus the compressed ones pydicom has a decoder for here."""
    from pydicom.pixels.decoders.base import get_decoder

    out = list(_UNCOMPRESSED)
    for uid in _COMPRESSED:
        try:
            if get_decoder(UID(uid)).is_available:
                out.append(uid)
        except NotImplementedError:
            continue
    return out


def study_date_folder(value: object) -> str:
    text = str(value or "").strip()
    return text if re.fullmatch(r"\d{8}", text) else "nodate"


def _file_name(sop_uid: object) -> str:
    text = str(sop_uid or "").strip()
    if not (text and UID(text).is_valid):
        from pydicom.uid import generate_uid

        text = generate_uid()
    return f"{text}.dcm"


def _encoded_size(event: Any) -> int:
    """Bytes of the received data set, as pynetdicom holds them (nothing decoded yet)."""
    data = event.request.DataSet
    return data.getbuffer().nbytes if data is not None else 0


def _status(code: int, comment: str) -> Dataset:
    """A C-STORE status with an Error Comment (64 characters at most) a sender can show."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _understood(event: Any) -> Dataset:
    """The received data set, every element decoded, naming the SOP class and instance its C-STORE
    announced; ValueError otherwise. pydicom reads almost any bytes as some data set (random bytes
    make one element of unknown VR), so a parse without errors alone proves nothing. Warnings are
    kept out: pydicom's quote the values they object to."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds: Dataset = event.dataset
        for _ in ds.iterall():  # converts every raw element; a damaged one raises here
            pass
        request = event.request
        if str(ds.get("SOPClassUID", "")) != str(request.AffectedSOPClassUID) or str(
            ds.get("SOPInstanceUID", "")
        ) != str(request.AffectedSOPInstanceUID):
            raise ValueError("the data set is not the instance its C-STORE announced")
    return ds


@dataclass
class _Study:
    site: str
    date: str
    last: float = field(default_factory=time.monotonic)


class StudyStager:
    """Staged studies and their last arrival; `release_quiet` moves the quiet ones into the inbox."""

    def __init__(self, inbox: Path, *, quiet_seconds: float, staging: str = STAGING) -> None:
        self.inbox = inbox
        self.root = inbox / staging  # hidden: the ingester skips it
        self.quiet = quiet_seconds
        self._studies: dict[Path, _Study] = {}
        self._lock = threading.Lock()
        self.received = 0
        self.refused = 0
        self.released = 0
        self._adopt_leftovers()

    def _adopt_leftovers(self) -> None:
        """Studies staged before a restart are released after a quiet time from now."""
        if not self.root.is_dir():
            return
        for site_dir in self.root.iterdir():
            site = site_dir.name
            if not site.startswith(NETWORK_SITE_PREFIX):  # staged by a version without the prefix
                site = network_site(site)
            for study_dir in site_dir.iterdir() if site_dir.is_dir() else []:
                for date_dir in study_dir.iterdir() if study_dir.is_dir() else []:
                    if date_dir.is_dir():
                        self._studies[date_dir] = _Study(site, date_dir.name)

    def store(self, data: bytes, *, calling_ae: str, study_uid: str, study_date: str, sop_uid: str) -> Path:
        """Write one instance atomically into its study's staging folder."""
        site = network_site(calling_ae)
        folder = self.root / site / study_folder(study_uid) / study_date
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / _file_name(sop_uid)
        partial = final.with_name(final.name + f".{os.getpid()}.{threading.get_ident()}.part")
        with partial.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, final)
        with self._lock:
            self._studies[folder] = _Study(site, study_date)
            self.received += 1
        return final

    def release_quiet(self, *, force: bool = False) -> int:
        """Move every study quiet for `quiet` seconds into inbox/<site>/<date>/; return files moved."""
        now = time.monotonic()
        with self._lock:
            due = [(p, s) for p, s in self._studies.items() if force or now - s.last >= self.quiet]
            for path, _ in due:
                del self._studies[path]
        moved = 0
        for folder, study in due:
            try:
                moved += self._move(folder, self.inbox / study.site / study.date)
            except OSError as exc:
                # A full disk or a permission on the inbox must not stop the listener, nor strand the
                # study: it stays staged (what moved already is in the inbox) and is tried again.
                logger.error(
                    "could not move a received study of site %s into the inbox (%s); retrying in %.0f s",
                    study.site,
                    exc.strerror or type(exc).__name__,
                    self.quiet,
                )
                with self._lock:
                    self._studies.setdefault(folder, _Study(study.site, study.date))
                continue
            for empty in (folder, folder.parent):
                with contextlib.suppress(OSError):  # not empty: another study of the same folder
                    empty.rmdir()
        if moved:
            self.released += moved
            logger.info("released %d received instances into the inbox", moved)
        return moved

    @staticmethod
    def _move(folder: Path, target: Path) -> int:
        target.mkdir(parents=True, exist_ok=True)
        moved = 0
        for src in sorted(folder.glob("*.dcm")):
            dst = target / src.name
            if dst.exists() and dst.read_bytes() != src.read_bytes():
                dst = target / f"{src.stem}.{time.time_ns()}.dcm"  # same UID, other content: keep both
            os.replace(src, dst)
            moved += 1
        return moved


class Listener:
    """The SCP: C-ECHO, C-STORE of photographs into a StudyStager, other SOP classes refused."""

    def __init__(
        self,
        inbox: Path,
        *,
        ae_title: str,
        address: str,
        port: int,
        allow: list[str],
        quiet_seconds: float,
        max_associations: int,
        acse_timeout: float,
        network_timeout: float,
        max_store_bytes: int,
    ) -> None:
        self.stager = StudyStager(inbox, quiet_seconds=quiet_seconds)
        self.address = address
        self.port = port
        self.max_store_bytes = max_store_bytes
        ae = AE(ae_title=ae_title)
        ae.require_calling_aet = list(allow)
        # pynetdicom's defaults (10 associations, 30 s to send an association request) let ten idle
        # TCP connections lock every modality out for 30 s: a connection that asks for nothing is
        # dropped after `acse_timeout`, and the limit leaves room for the modalities.
        ae.maximum_associations = max_associations
        ae.acse_timeout = acse_timeout
        ae.network_timeout = network_timeout
        ae.dimse_timeout = network_timeout
        photo_syntaxes = decodable_syntaxes()
        ae.add_supported_context(VERIFICATION)
        for uid in sorted(PHOTO_SOP_CLASSES):
            ae.add_supported_context(uid, photo_syntaxes)
        # Other storage classes are negotiated so that their C-STORE gets a status a sender can show.
        for context in StoragePresentationContexts:
            other = context.abstract_syntax
            if other is not None and other not in PHOTO_SOP_CLASSES:
                ae.add_supported_context(other, _UNCOMPRESSED + _COMPRESSED)
        ae.maximum_pdu_size = 0  # no limit on what we accept
        self.ae = ae
        self._server: Any = None
        self._stop = threading.Event()

    def handle_store(self, event: Any) -> int | Dataset:
        sop_class = str(event.request.AffectedSOPClassUID)
        calling = str(event.assoc.requestor.ae_title).strip()
        if sop_class not in PHOTO_SOP_CLASSES:
            self.stager.refused += 1
            logger.warning("refused a C-STORE from %s: SOP class %s is not a photograph", calling, sop_class)
            return STATUS_SOP_CLASS_NOT_SUPPORTED
        size = _encoded_size(event)
        if size > self.max_store_bytes:
            self.stager.refused += 1
            logger.warning(
                "refused a C-STORE from %s: %d bytes, more than the %d allowed",
                calling,
                size,
                self.max_store_bytes,
            )
            return _status(STATUS_OUT_OF_RESOURCES, f"instance larger than {self.max_store_bytes} bytes")
        try:
            ds = _understood(event)
            study_uid = str(ds.get("StudyInstanceUID", "") or "")
            study_date = study_date_folder(ds.get("StudyDate"))
            sop_uid = str(event.request.AffectedSOPInstanceUID)
        except Exception:  # a data set pydicom cannot parse, or one that is not what was announced
            self.stager.refused += 1
            logger.warning("refused a C-STORE from %s: the data set cannot be understood", calling)
            return STATUS_CANNOT_UNDERSTAND
        try:
            self.stager.store(
                event.encoded_dataset(),
                calling_ae=calling,
                study_uid=study_uid,
                study_date=study_date,
                sop_uid=sop_uid,
            )
        except OSError as exc:
            logger.error("cannot write a received instance: %s", exc.strerror or type(exc).__name__)
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

    def metrics_reading(self) -> Iterable[tuple[str, str, float | None, dict[str, str]]]:
        """The listener's own totals for its /metrics (a `metrics.CallbackCollector`, counters)."""
        text = "DICOM instances the listener received, refused, and released into the inbox."
        for result in ("received", "refused", "released"):
            yield "skinscreen_dicom_instances", text, getattr(self.stager, result), {"result": result}

    def start(self) -> None:
        """Start accepting associations in background threads."""
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_C_ECHO, lambda _e: STATUS_SUCCESS),
        ]
        self._server = self.ae.start_server((self.address, self.port), block=False, evt_handlers=handlers)
        logger.info("DICOM listener %s on %s:%d", self.ae.ae_title, self.address, self.port)

    def tick(self) -> None:
        self.stager.release_quiet()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        # A study still arriving stays staged; the next start releases it after a quiet time.

    def serve_forever(self, *, every: float = 0.25, also: Any = None) -> None:
        """Release quiet studies (and run `also()`, e.g. a send pass) until `request_stop()` is called."""
        self.start()
        try:
            while not self._stop.wait(every):
                self.tick()
                if also is not None:
                    also()
        finally:
            self.stop()

    def request_stop(self) -> None:
        self._stop.set()
