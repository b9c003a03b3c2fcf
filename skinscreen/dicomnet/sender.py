"""Build due DICOM results from their source files and deliver them: C-STORE to a PACS, STOW-RS to a
DICOMweb root (`dicomweb`), or an outbox.

Outcomes per object: success (or a warning status) -> sent; a failure status from the peer, a
permanent association rejection or a SOP class the peer does not accept -> failed, with the peer's
words; the destination unreachable, a transient rejection or a lost association -> still pending,
retried after a doubling backoff. A pass where some objects fail is reported as an error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydicom import config as dicom_config
from pydicom.dataset import Dataset
from pydicom.uid import UID
from sqlalchemy.orm import Session, sessionmaker

from skinscreen import scoredfile
from skinscreen.config import Settings, is_dicomweb
from skinscreen.db import exports
from skinscreen.db.cases import mark_file_changed
from skinscreen.db.session import session_scope
from skinscreen.db.tables import Batch, DicomExport, ExportState, Image, Prediction, Review, utcnow
from skinscreen.dicomnet import dicomweb, results
from skinscreen.dicomnet.address import parse_destination, study_folder
from skinscreen.errors import FileChangedError, UnreadableImageError

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)


@dataclass
class SendReport:
    """What one pass did."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.pending == 0


@dataclass
class _Built:
    export_id: int
    dataset: Dataset | None
    error: str | None = None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings and no pydicom value checks while a result is built from a source header: both
    quote the value they object to (highdicom a one-component PatientName, pydicom an invalid
    PatientBirthDate), and header values must not reach a log."""
    with warnings.catch_warnings(), dicom_config.disable_value_validation():
        warnings.simplefilter("ignore")
        yield


class ResultBuilder:
    """Builds an export row's object; the Grad-CAM model is loaded on the first Secondary Capture."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._heatmaps: Any = None
        self._cards: dict[str, Any] = {}  # version -> ModelCard: the registry scans every card folder

    def _operating_point(self, prediction: Prediction) -> str:
        """The card's threshold rule when the prediction used this model's own threshold, else the
        threshold (another version's, or a site's calibrated one, which the rule does not describe)."""
        from skinscreen.models.registry import find_model, read_card

        s = self.settings
        card = self._cards.get(prediction.model_version)
        if card is None:
            try:
                card = read_card(find_model(prediction.model_version, s.models_folder(), default=s.model))
            except Exception:  # no model here (not kept: one installed later is found): say the threshold
                return f"threshold {prediction.threshold:.4f}"
            self._cards[prediction.model_version] = card
        if prediction.model_version == card.version and math.isclose(prediction.threshold, card.threshold):
            rule = card.data.get("threshold_rule")
            if rule:
                return f"model default: {rule}"
        return f"threshold {prediction.threshold:.4f}"

    def overlay(self, image: Image, version: str, *, data: bytes) -> Any:
        """The image (`data`, its checked bytes) with the Grad-CAM map of the model `version`."""
        from skinscreen.images import decode_image
        from skinscreen.models.gradcam import overlay
        from skinscreen.models.preprocess import seen_pixels
        from skinscreen.review.heatmaps import HeatmapStore, fit

        if self._heatmaps is None:
            self._heatmaps = HeatmapStore(
                folder=self.settings.heatmap_folder(),
                models=[self.settings.model],
                models_folder=self.settings.models_folder(),
            )
        heat = self._heatmaps.heatmap(
            version=version,
            sha256=image.sha256,
            model_input=lambda size: seen_pixels(
                lambda draft: decode_image(io.BytesIO(data), draft_size=draft), size=size
            )[1],
        )
        return overlay(fit(decode_image(io.BytesIO(data)).pixels, max_side=1024), heat)

    def source_bytes(self, session: Session, image: Image) -> bytes:
        """The scored file's bytes, only from inside the inbox and only if they hash to the scored
        sha256 (`skinscreen.scoredfile`): a result names the patient of the file it is built from,
        so a path swapped after scoring must not lend another patient's header to this score.
        A changed file, or a path that now leads out of the inbox, is marked on its case
        (`file_changed_at`, which the case page shows), as the review server does."""
        roots = list(self.settings.inbox)
        if not roots and image.batch_id is not None:
            batch = session.get(Batch, image.batch_id)
            roots = scoredfile.roots_of([], batch.folder, batch.site) if batch is not None else []
        try:
            return scoredfile.read_scored(image.path, size=image.size, sha256=image.sha256, roots=roots)
        except FileChangedError:
            mark_file_changed(session, image.id)
            raise
        except UnreadableImageError as exc:
            if exc.reason == scoredfile.OUTSIDE:  # the path now shows some other file
                mark_file_changed(session, image.id)
            raise

    def build(self, session: Session, export: DicomExport) -> _Built:
        image = session.get(Image, export.image_id)
        prediction = session.get(Prediction, export.prediction_id)
        if image is None or prediction is None:
            return _Built(export.id, None, "the image or its prediction is gone")
        try:
            data = self.source_bytes(session, image)
        except (FileChangedError, UnreadableImageError) as exc:
            logger.warning("no DICOM result %d: the source file of image %d is refused", export.id, image.id)
            return _Built(export.id, None, f"source file refused: {exc}")
        try:
            with _quiet():
                source = results.read_source(io.BytesIO(data))
        except Exception as exc:  # damaged: the reason names no header value
            return _Built(export.id, None, f"cannot read the source DICOM ({type(exc).__name__})")
        bad_uid = _invalid_uid(source)
        if bad_uid is not None:
            return _Built(export.id, None, f"the source's {bad_uid} is not a valid DICOM UID")
        facts = results.ResultFacts(
            model_version=prediction.model_version,
            probability=prediction.probability,
            threshold=prediction.threshold,
            flagged=prediction.flagged,
            operating_point=self._operating_point(prediction),
            sop_instance_uid=export.sop_instance_uid,
        )
        try:
            if export.kind == exports.KIND_SC:
                overlay = self.overlay(image, prediction.model_version, data=data)
                with _quiet():
                    return _Built(export.id, results.build_sc(source, overlay, facts))
            verification = None
            if export.kind == exports.KIND_SR_VERIFIED:
                review = session.get(Review, export.review_id)
                before = exports.previous_sr(session, export)
                if review is None or before is None:
                    return _Built(export.id, None, "the verdict or the SR it verifies is gone")
                verification = results.Verification(
                    verdict=review.verdict.value,
                    reviewer=review.account.name,
                    organization=self.settings.dicom_institution,
                    previous_sop_instance_uid=before.sop_instance_uid,
                    previous_series_uid=results.series_uid(
                        str(source.StudyInstanceUID), "sr", prediction.model_version
                    ),
                )
                facts = replace(facts, instance_number=1 + export.id)
            with _quiet():
                return _Built(export.id, results.build_sr(source, facts, verification=verification))
        except Exception as exc:  # the type only: the message may quote a header value
            logger.error("cannot build DICOM result %d (%s)", export.id, type(exc).__name__)
            return _Built(export.id, None, f"cannot build the result ({type(exc).__name__})")


def _invalid_uid(source: Dataset) -> str | None:
    """The name of the first source UID a result would copy that is not a valid UID, if any: a
    result joins the source's study and references its instance, so `../../x` (or a UID with
    letters) would reach the PACS and, through the outbox, the file system. No result is made: a
    new Study Instance UID would file the result in a study of its own, away from its image."""
    for keyword, name in (
        ("StudyInstanceUID", "Study Instance UID"),
        ("SeriesInstanceUID", "Series Instance UID"),
        ("SOPInstanceUID", "SOP Instance UID"),
    ):
        if not UID(str(source.get(keyword, "") or "")).is_valid:
            return name
    return None


def _to_outbox(folder: Path, built: list[_Built]) -> dict[int, tuple[ExportState, str | None]]:
    out: dict[int, tuple[ExportState, str | None]] = {}
    for item in built:
        assert item.dataset is not None
        target = folder / study_folder(str(item.dataset.StudyInstanceUID))
        try:
            target.mkdir(parents=True, exist_ok=True)
            final = target / f"{item.dataset.SOPInstanceUID}.dcm"
            partial = final.with_name(final.name + ".part")
            partial.write_bytes(results.encode(item.dataset))
            os.replace(partial, final)
            out[item.export_id] = (ExportState.sent, None)
        except OSError as exc:
            out[item.export_id] = (ExportState.pending, f"cannot write to the outbox: {exc.strerror}")
    return out


def _status_text(code: int) -> str:
    return dicomweb.status_text(code, "peer status")


def _to_peer(text: str, ae_title: str, built: list[_Built]) -> dict[int, tuple[ExportState, str | None]]:
    from pynetdicom import AE

    dest = parse_destination(text)
    try:  # pynetdicom leaks its socket when the connection is refused: find out first
        socket.create_connection((dest.host, dest.port), timeout=10).close()
    except OSError as exc:
        error = f"destination {dest} unreachable ({exc.strerror or type(exc).__name__})"
        return {b.export_id: (ExportState.pending, error) for b in built}
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for uid in sorted({str(b.dataset.SOPClassUID) for b in built if b.dataset is not None}):
        ae.add_requested_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        state, error = ExportState.pending, f"destination {dest} unreachable"
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            permanent = rsp is not None and rsp.result == 0x01
            reason = f"{rsp.reason_str} ({rsp.source_str})" if rsp is not None else "no reason given"
            state = ExportState.failed if permanent else ExportState.pending
            error = f"association rejected by {dest}: {reason}"
        elif assoc.is_aborted:
            error = f"association aborted by {dest}"
        return {b.export_id: (state, error) for b in built}
    out: dict[int, tuple[ExportState, str | None]] = {}
    try:
        for item in built:
            assert item.dataset is not None
            accepted = [
                cx for cx in assoc.accepted_contexts if cx.abstract_syntax == item.dataset.SOPClassUID
            ]
            if not accepted:
                out[item.export_id] = (ExportState.failed, f"{dest} does not accept this SOP class")
                continue
            if not assoc.is_established:
                out[item.export_id] = (ExportState.pending, f"association with {dest} lost")
                continue
            try:
                status = assoc.send_c_store(item.dataset)
            except (AttributeError, ValueError) as exc:
                # pynetdicom refuses an object it cannot encode or place in a context: a fault of this
                # object, not of the peer, so it fails alone and the pass goes on.
                reason = f"the result could not be encoded for sending ({type(exc).__name__})"
                out[item.export_id] = (ExportState.failed, reason)
                continue
            code = int(status.get("Status", -1)) if status else -1
            if code == -1:
                out[item.export_id] = (ExportState.pending, f"no answer from {dest}")
            elif code == 0x0000:
                out[item.export_id] = (ExportState.sent, None)
            elif code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
                out[item.export_id] = (ExportState.sent, _status_text(code))  # stored, with a warning
            else:
                out[item.export_id] = (ExportState.failed, _status_text(code))
    finally:
        if assoc.is_established:
            assoc.release()
    return out


def send_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    everything: bool = False,
    limit: int = 200,
    builder: ResultBuilder | None = None,
) -> SendReport:
    """Build and deliver the exports due now (`everything`: every pending one); one pass."""
    report = SendReport()
    if not settings.dicom_results:
        return report
    builder = builder or ResultBuilder(settings)
    destination = settings.dicom_destination or f"outbox:{settings.dicom_outbox}"
    with session_scope(sessions) as session:
        ids = exports.claim_due(session, now=utcnow(), lease=LEASE, limit=limit, everything=everything)
    if not ids:
        return report
    built: list[_Built] = []
    with session_scope(sessions) as session:
        for export_id in ids:
            row = session.get(DicomExport, export_id)
            if row is not None:
                item = builder.build(session, row)
                if item.dataset is not None and row.series_uid is None:
                    row.series_uid = str(item.dataset.SeriesInstanceUID)
                built.append(item)
    ready = [b for b in built if b.dataset is not None]
    outcomes: dict[int, tuple[ExportState, str | None]] = {
        b.export_id: (ExportState.failed, b.error) for b in built if b.dataset is None
    }
    if ready:
        if settings.dicom_destination and is_dicomweb(settings.dicom_destination):
            pairs = [(b.export_id, b.dataset) for b in ready if b.dataset is not None]
            outcomes.update(dicomweb.stow(settings, pairs))
        elif settings.dicom_destination:
            outcomes.update(_to_peer(settings.dicom_destination, settings.dicom_ae_title, ready))
        else:
            assert settings.dicom_outbox is not None
            outcomes.update(_to_outbox(settings.dicom_outbox, ready))
    with session_scope(sessions) as session:
        for export_id, (state, error) in outcomes.items():
            exports.record(
                session, export_id, state=state, destination=destination, error=error, settings=settings
            )
            setattr(report, state.value, getattr(report, state.value) + 1)
            if error and state != ExportState.sent:
                report.errors.append(error)
    level = logging.INFO if report.ok else logging.WARNING
    logger.log(
        level,
        "DICOM results: %d sent, %d failed, %d still pending",
        report.sent,
        report.failed,
        report.pending,
    )
    return report
