"""The DICOM pieces without a network or a model: addresses, staging, export rows, the outbox."""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from skinscreen.checksum import sha256_file
from skinscreen.config import Settings
from skinscreen.db import exports, migrate, queries
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import DicomExport, ExportState, Image, Prediction, utcnow
from skinscreen.dicomnet.address import folder_name, network_site, parse_destination
from skinscreen.dicomnet.listener import STAGING, StudyStager
from skinscreen.dicomnet.sender import ResultBuilder, send_due
from skinscreen.images import decode_image
from skinscreen.results import DicomInfo, FileScore
from tests.dicom_factory import make_dicom

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"


def test_destinations_are_parsed_and_bad_ones_explained() -> None:
    dest = parse_destination("PACS@10.0.0.7:104")
    assert (dest.ae_title, dest.host, dest.port) == ("PACS", "10.0.0.7", 104)
    for bad, words in [
        ("10.0.0.7:104", "AE@host:port"),
        ("PACS@10.0.0.7", "host:port"),
        ("A_TITLE_LONGER_THAN_16@h:1", "1-16"),
        ("PACS@h:70000", "1-65535"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_destination(bad)
    with pytest.raises(ValueError):
        Settings(dicom_destination="nonsense")


def test_calling_ae_titles_become_safe_folder_names() -> None:
    assert folder_name("DERMCAM 1") == "DERMCAM_1"
    assert folder_name("../../etc") == "etc"
    assert folder_name(".hidden") == "hidden"
    assert folder_name("   ") == "UNKNOWN_AE"


@pytest.mark.parametrize("calling_ae", ["hospital-a", "../../etc", "../hospital-a"])
def test_a_calling_ae_named_like_a_folder_site_or_a_path_cannot_write_into_it(
    tmp_path: Path, calling_ae: str
) -> None:
    """Without an allow list anyone may call: its site is `dicom-<AE>`, never a folder site's name
    (`hospital-a`, which hospital IT drops into) nor a path out of the inbox."""
    inbox = tmp_path / "inbox"
    (inbox / "hospital-a" / "20240115").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    stager = StudyStager(inbox, quiet_seconds=0.0)
    stager.store(b"x", calling_ae=calling_ae, study_uid="1.2.3", study_date="20240115", sop_uid="1.2.3.9")
    assert stager.release_quiet() == 1
    (landed,) = [p for p in tmp_path.rglob("*.dcm")]
    site = landed.relative_to(inbox).parts[0]
    assert site.startswith("dicom-") and site == network_site(calling_ae)
    assert list((inbox / "hospital-a").rglob("*")) == [inbox / "hospital-a" / "20240115"]
    assert not any((tmp_path / "etc").iterdir())


def test_a_study_reaches_the_inbox_whole_after_the_quiet_time(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    stager = StudyStager(inbox, quiet_seconds=0.3)
    for n in range(3):
        stager.store(
            b"x" * 10, calling_ae="CAM", study_uid="1.2.3", study_date="20240115", sop_uid=f"1.2.3.{n}"
        )
    assert stager.release_quiet() == 0  # still arriving
    assert not (inbox / "dicom-CAM").exists()
    assert not list(inbox.rglob("*.part"))
    time.sleep(0.35)
    assert stager.release_quiet() == 3
    assert sorted(p.name for p in (inbox / "dicom-CAM" / "20240115").iterdir()) == [
        f"1.2.3.{n}.dcm" for n in range(3)
    ]

    # Staged before a restart: released by the next listener after a quiet time.
    stager.store(b"y", calling_ae="CAM", study_uid="1.2.4", study_date="nodate", sop_uid="not a uid")
    again = StudyStager(inbox, quiet_seconds=0.0)
    assert again.release_quiet() == 1
    assert len(list((inbox / "dicom-CAM" / "nodate").iterdir())) == 1
    assert not any((inbox / STAGING).rglob("*.dcm"))


def test_a_study_the_inbox_refuses_stays_staged_and_moves_on_a_later_try(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    stager = StudyStager(inbox, quiet_seconds=0.0)
    stager.store(b"x", calling_ae="CAM", study_uid="1.2.3", study_date="20240115", sop_uid="1.2.3.1")
    (inbox / "dicom-CAM").write_bytes(b"")  # the site's inbox folder cannot be made: a file is in the way
    with caplog.at_level(logging.ERROR):
        assert stager.release_quiet() == 0  # no exception: the listener's loop goes on
    assert "could not move a received study of site dicom-CAM" in caplog.text
    assert len(list((inbox / STAGING).rglob("*.dcm"))) == 1  # nothing lost
    (inbox / "dicom-CAM").unlink()
    assert stager.release_quiet() == 1
    assert [p.name for p in (inbox / "dicom-CAM" / "20240115").iterdir()] == ["1.2.3.1.dcm"]


class NoGradCam(ResultBuilder):
    """The overlay without Keras: the image itself (the Grad-CAM path is covered end to end)."""

    def overlay(self, image: Any, version: str, *, data: bytes) -> Any:
        return decode_image(io.BytesIO(data)).pixels


def accept_edit(sessions: Any, image_id: int, path: Path) -> None:
    """Record `path`'s current bytes as the ones scored (a test that edits a source before sending)."""
    with session_scope(sessions) as session:
        image = session.get(Image, image_id)
        assert image is not None
        image.sha256, image.size = sha256_file(path), path.stat().st_size


def score(sessions: Any, path: Path, *, probability: float = 0.8, audit_fraction: float = 0.0) -> int:
    """Register `path` (in `<inbox>/<site>/<date>/`) as ingest does, with its real size and sha256,
    and store a v1 score for it."""
    ds = pydicom.dcmread(path)
    with session_scope(sessions) as session:
        image_id, _ = queries.register_file(
            session,
            path=str(path),
            size=path.stat().st_size,
            mtime_ns=1,
            sha256=sha256_file(path),
            site=path.parent.parent.name,
            folder=str(path.parent),
        )
        dicom = DicomInfo(study_uid=ds.StudyInstanceUID, sop_uid=ds.SOPInstanceUID)
        flagged = probability >= 0.5
        result = FileScore(path, probability, flagged, 0.5, None, "dicom", dicom)
        queries.save_scores(session, {image_id: result}, model_version="v1", audit_fraction=audit_fraction)
    return image_id


@pytest.fixture
def scored_dicom(tmp_path: Path) -> tuple[Any, Path, int]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    sessions = make_session_factory(make_engine(url))
    src = make_dicom(SOURCE, tmp_path / "inbox" / "CAM" / "20240115" / "one.dcm", syntax="explicit_le")
    image_id = score(sessions, src)
    return sessions, src, image_id


def test_results_go_to_the_outbox_once_and_unwritable_ones_wait(
    scored_dicom: tuple[Any, Path, int], tmp_path: Path
) -> None:
    sessions, src, image_id = scored_dicom
    outbox = tmp_path / "outbox"
    outbox.write_text("a file where the folder should be")
    settings = Settings(dicom_outbox=outbox, export_backoff=60, model="default")
    with session_scope(sessions) as session:
        ids = [image_id]
        assert exports.queue_scored(session, ids, model_version="v1", settings=settings) == 2
        assert exports.queue_scored(session, ids, model_version="v1", settings=settings) == 0  # idempotent
        assert exports.queue_scored(session, ids, model_version="v1", settings=Settings()) == 0  # results off

    report = send_due(sessions, settings, builder=NoGradCam(settings))
    assert (report.sent, report.pending) == (0, 2)
    with session_scope(sessions) as session:
        rows = session.execute(select(DicomExport)).scalars().all()
        assert all(r.state == ExportState.pending and r.attempts == 1 for r in rows)
        assert all(r.next_attempt_at.replace(tzinfo=None) > utcnow().replace(tzinfo=None) for r in rows)
    assert send_due(sessions, settings, builder=NoGradCam(settings)).pending == 0  # backing off: not due

    outbox.unlink()
    report = send_due(sessions, settings, everything=True, builder=NoGradCam(settings))
    assert (report.sent, report.failed, report.pending) == (2, 0, 0)
    written = sorted(outbox.rglob("*.dcm"))
    assert len(written) == 2
    source = pydicom.dcmread(src)
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == source.StudyInstanceUID == path.parent.name
        assert ds.PatientID == source.PatientID
    with session_scope(sessions) as session:
        assert exports.counts(session) == {"pending": 0, "sent": 2, "failed": 0}
        assert {r["state"] for r in exports.list_exports(session)} == {ExportState.sent}


@pytest.mark.parametrize(
    ("keyword", "value", "name"),
    [
        ("StudyInstanceUID", "../../escaped", "Study Instance UID"),
        ("StudyInstanceUID", "1.2.abc", "Study Instance UID"),
        ("SOPInstanceUID", "../../x", "SOP Instance UID"),
    ],
)
def test_a_study_uid_that_is_not_a_uid_is_never_copied_into_results(
    scored_dicom: tuple[Any, Path, int], tmp_path: Path, keyword: str, value: str, name: str
) -> None:
    """A result joins the source's study: a UID that is not one (`../../x`) makes no result, and the
    export fails saying which UID; nothing reaches the outbox, inside it or beside it."""
    sessions, src, image_id = scored_dicom
    ds = pydicom.dcmread(src)
    setattr(ds, keyword, value)
    ds.save_as(src, enforce_file_format=True)
    accept_edit(sessions, image_id, src)
    outbox = tmp_path / "deep" / "outbox"
    settings = Settings(dicom_outbox=outbox, model="default")
    with session_scope(sessions) as session:
        assert exports.queue_scored(session, [image_id], model_version="v1", settings=settings) == 2
    report = send_due(sessions, settings, builder=NoGradCam(settings))
    assert (report.sent, report.failed) == (0, 2)
    assert report.errors == [f"the source's {name} is not a valid DICOM UID"] * 2
    assert not (tmp_path / "escaped").exists()
    assert list(tmp_path.rglob("*.dcm")) == [src]  # the source is the only DICOM file


@pytest.mark.parametrize(
    ("keyword", "value", "sent"),
    [
        ("PatientName", "SECRETNAME JOHN", 2),  # one component: highdicom warns, quoting it
        ("PatientBirthDate", "1980-13-45", 0),  # invalid: pydicom logs it, the build's error quotes it
    ],
)
def test_header_values_that_stop_or_trouble_a_build_reach_no_log(
    scored_dicom: tuple[Any, Path, int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    keyword: str,
    value: str,
    sent: int,
) -> None:
    sessions, src, image_id = scored_dicom
    ds = pydicom.dcmread(src)
    setattr(ds, keyword, value)
    ds.save_as(src, enforce_file_format=True)
    accept_edit(sessions, image_id, src)
    settings = Settings(dicom_outbox=tmp_path / "outbox", model="default")
    with session_scope(sessions) as session:
        exports.queue_scored(session, [image_id], model_version="v1", settings=settings)
    caplog.set_level(logging.DEBUG)
    report = send_due(sessions, settings, builder=NoGradCam(settings))
    assert (report.sent, report.failed) == (sent, 2 - sent)
    assert all("ValueError" in e for e in report.errors)
    captured = capfd.readouterr()
    for text in (caplog.text, captured.out, captured.err, *report.errors):
        assert value not in text and value.split()[0] not in text


def test_the_operating_point_names_the_rule_only_for_the_threshold_it_chose(tmp_path: Path) -> None:
    card = {"version": "v1", "threshold": 0.5, "input_size": 64, "threshold_rule": "sensitivity >= 0.9"}
    (tmp_path / "card.json").write_text(json.dumps(card))
    builder = ResultBuilder(Settings(model=str(tmp_path)))
    for version, threshold, said in [
        ("v1", 0.5, "model default: sensitivity >= 0.9"),
        ("v1", 0.3, "threshold 0.3000"),  # a site's calibrated threshold, not the card's rule
        ("v10", 0.5, "threshold 0.5000"),  # another model whose version starts the same
    ]:
        prediction = Prediction(model_version=version, threshold=threshold)
        assert builder._operating_point(prediction) == said


@pytest.mark.integration
def test_two_senders_never_claim_the_same_export(pg_url: str, tmp_path: Path) -> None:
    """A claim still open in one sender: another one, at the same time, gets none of its rows."""
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    src = make_dicom(SOURCE, tmp_path / "one.dcm", syntax="explicit_le")
    ds = pydicom.dcmread(src)
    with session_scope(sessions) as session:
        image_id, _ = queries.register_file(
            session, path=str(src), size=1, mtime_ns=1, sha256="b" * 64, site="CAM", folder=str(tmp_path)
        )
        dicom = DicomInfo(study_uid=ds.StudyInstanceUID, sop_uid=ds.SOPInstanceUID)
        queries.save_scores(
            session, {image_id: FileScore(src, 0.8, True, 0.5, None, "dicom", dicom)}, model_version="v1"
        )
        settings = Settings(dicom_outbox=tmp_path / "outbox")
        assert exports.queue_scored(session, [image_id], model_version="v1", settings=settings) == 2

    def claim(session: Any) -> list[int]:
        return exports.claim_due(
            session, now=utcnow(), lease=timedelta(minutes=5), limit=10, everything=False
        )

    first = sessions()
    claimed = claim(first)  # not committed yet: the first sender is still claiming
    other: dict[str, list[int]] = {}

    def second() -> None:
        with session_scope(sessions) as session:
            other["ids"] = claim(session)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=2)
    first.commit()
    first.close()
    thread.join(timeout=30)
    engine.dispose()
    assert len(claimed) == 2
    assert other["ids"] == []


def test_the_backoff_doubles_up_to_its_cap() -> None:
    settings = Settings(export_backoff=10, export_backoff_max=35)
    assert [exports.backoff(n, settings).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 35, 35]
    assert np.isclose(exports.backoff(0, settings).total_seconds(), 10)


def test_a_redelivered_batch_queues_the_results_a_crash_lost(
    scored_dicom: tuple[Any, Path, int], tiny_model: Path, tmp_path: Path
) -> None:
    """The worker stored the scores and died before queueing the DICOM results: the batch comes
    back (late ack), finds nothing left to score, and still queues the results, once."""
    from concurrent.futures import ThreadPoolExecutor

    from skinscreen.models.classifier import load_classifier
    from skinscreen.worker.batches import score_ids

    sessions, _, image_id = scored_dicom  # scored by v1, nothing queued: the crash
    model = tmp_path / "v1"
    shutil.copytree(tiny_model, model)
    card = json.loads((model / "card.json").read_text())
    (model / "card.json").write_text(json.dumps({**card, "version": "v1"}))
    classifier = load_classifier(model, backend="onnx")
    settings = Settings(dicom_outbox=tmp_path / "outbox", model=str(model))
    with ThreadPoolExecutor(1) as pool:
        for _ in range(2):
            report = score_ids(
                [image_id], sessions=sessions, classifier=classifier, pool=pool, settings=settings
            )
            assert (report.scored, report.skipped) == (0, 1)
    with session_scope(sessions) as session:
        assert exports.counts(session) == {"pending": 2, "sent": 0, "failed": 0}
