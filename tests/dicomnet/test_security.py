"""Abuse of the DICOM side, each case against the real part: a swapped source file, a blinded audit
case, two senders at once, and the sender's logs (results); the listener's answers to idle
connections, unparsable and oversized data sets, and its /metrics (a real `dicom-listen` process)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, _config
from sqlalchemy import select

from skinscreen.cli import cli
from skinscreen.config import MAX_FILE_BYTES, Settings
from skinscreen.db import accounts, exports, migrate, verdicts
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import DicomExport, ExportState, Image, Role, Verdict, utcnow
from skinscreen.dicomnet.listener import Listener
from skinscreen.dicomnet.sender import LEASE, send_due
from skinscreen.errors import UnreadableImageError
from skinscreen.images import read_image
from tests.dicom_factory import CT_IMAGE_SOP, make_dicom
from tests.dicomnet.test_dicom_network import _accepts, free_port, storescp
from tests.dicomnet.test_units import NoGradCam, score
from tests.worker.pipeline import Process, env_for, wait_for

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"
BATCH = Path("inbox") / "CAM" / "20240115"
VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A migrated SQLite database: its URL and a session factory."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield url, make_session_factory(engine)
    engine.dispose()


def test_a_result_is_built_only_from_the_scored_bytes_inside_the_inbox(
    tmp_path: Path, sqlite_db: tuple[str, Any]
) -> None:
    """Two files scored, the PACS down; then one is replaced by a symlink to another patient's file
    outside the inbox and the other overwritten with a third patient's file. `exports --retry` with
    the PACS up sends nothing at all (so nothing naming those patients) and fails both, saying why."""
    url, sessions = sqlite_db
    first = make_dicom(SOURCE, tmp_path / BATCH / "first.dcm", syntax="explicit_le")
    second = make_dicom(SOURCE, tmp_path / BATCH / "second.dcm", syntax="explicit_le")
    outside = make_dicom(
        SOURCE, tmp_path / "elsewhere" / "o.dcm", syntax="explicit_le", patient_name="Other^Olga"
    )
    third = make_dicom(SOURCE, tmp_path / "third.dcm", syntax="explicit_le", patient_name="Third^Theo")
    ids = [score(sessions, first), score(sessions, second)]
    port = free_port()
    env = {"SKINSCREEN_DATABASE_URL": url, "SKINSCREEN_DICOM_DESTINATION": f"PACS@127.0.0.1:{port}"}
    settings = Settings(database_url=url, dicom_destination=env["SKINSCREEN_DICOM_DESTINATION"])
    with session_scope(sessions) as session:
        assert exports.queue_scored(session, ids, model_version="v1", settings=settings) == 4
    down = send_due(sessions, settings, builder=NoGradCam(settings))
    assert (down.sent, down.pending) == (0, 4)

    first.unlink()
    first.symlink_to(outside)
    second.write_bytes(third.read_bytes())
    pacs = tmp_path / "pacs"
    pacs.mkdir()
    with storescp(port, pacs):
        wait_for(lambda: _accepts(port), timeout=30, what="storescp to listen")
        retried = CliRunner().invoke(cli, ["exports", "--retry", "--format", "json"], env=env)
        time.sleep(0.5)  # anything the PACS took is on its disk by now
    assert retried.exit_code != 0
    assert list(pacs.iterdir()) == []
    rows = json.loads(retried.stdout)
    assert {r["state"] for r in rows} == {"failed"}
    reasons = {r["image_id"]: r["last_error"] for r in rows}
    assert "leads outside the inbox" in reasons[ids[0]]
    assert "changed since it was scored" in reasons[ids[1]]
    with session_scope(sessions) as session:  # the case shows it, as the review server's check does
        marked = session.execute(select(Image.file_changed_at).where(Image.id.in_(ids))).scalars().all()
    assert all(m is not None for m in marked)


def test_a_blinded_audit_case_sends_nothing_until_its_verdict(
    tmp_path: Path, sqlite_db: tuple[str, Any]
) -> None:
    """An unflagged case drawn into the audit sample: its SR and Secondary Capture (probability,
    flag, heatmap) wait, shown as held, however often the sender passes; after the verdict they
    leave, followed by the VERIFIED SR."""
    url, sessions = sqlite_db
    source = make_dicom(SOURCE, tmp_path / BATCH / "audit.dcm", syntax="explicit_le")
    image_id = score(sessions, source, probability=0.2, audit_fraction=1.0)
    outbox = tmp_path / "outbox"
    settings = Settings(database_url=url, dicom_outbox=outbox, model="default")
    with session_scope(sessions) as session:
        assert exports.queue_scored(session, [image_id], model_version="v1", settings=settings) == 2
    for _ in range(2):
        report = send_due(sessions, settings, everything=True, builder=NoGradCam(settings))
        assert (report.sent, report.failed, report.pending) == (0, 0, 0)
    assert not outbox.exists()
    with session_scope(sessions) as session:
        listed = exports.list_exports(session)
        assert {(r["state"], r["last_error"]) for r in listed} == {(ExportState.pending, exports.HELD)}
        account = accounts.add_account(session, name="derm", role=Role.reviewer, password_hash="x")
        verdicts.add_review(
            session, image_id=image_id, account_id=account.id, verdict=Verdict.benign, note=None
        )
    report = send_due(sessions, settings, builder=NoGradCam(settings))
    assert (report.sent, report.failed, report.pending) == (3, 0, 0)
    flags = sorted(str(pydicom.dcmread(p).get("VerificationFlag", "")) for p in outbox.rglob("*.dcm"))
    assert flags == ["", "UNVERIFIED", "VERIFIED"]  # the Secondary Capture has none


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_export_retries_at_once_never_claim_the_same_row(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`exports --retry` while another sender holds rows: it makes every row due and takes pending
    ones whatever their backoff, but never rows another sender claimed; an abandoned claim expires."""
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        migrate.upgrade(url)
        engine = make_engine(url)
        request.addfinalizer(engine.dispose)
        sessions = make_session_factory(engine)
    else:
        url, sessions = request.getfixturevalue("sqlite_db")
    image_id = score(sessions, make_dicom(SOURCE, tmp_path / BATCH / "one.dcm", syntax="explicit_le"))
    with session_scope(sessions) as session:
        settings = Settings(dicom_outbox=tmp_path / "outbox")
        assert exports.queue_scored(session, [image_id], model_version="v1", settings=settings) == 2

    def retry(session: Any, *, now: Any = None) -> list[int]:
        exports.retry_failed(session)
        exports.make_due(session)
        return exports.claim_due(session, now=now or utcnow(), lease=LEASE, limit=100, everything=True)

    with session_scope(sessions) as session:
        held_by_first = retry(session)  # the first `--retry`, now building and sending
    with session_scope(sessions) as session:
        second = retry(session)
    assert len(held_by_first) == 2 and second == []
    with session_scope(sessions) as session:  # the first sender died: its claim runs out
        assert retry(session, now=utcnow() + LEASE * 2) == held_by_first


def test_highdicom_and_pynetdicom_log_no_sop_instance_uid(
    tmp_path: Path, sqlite_db: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A C-STORE received by the listener and the results built and written for it, everything
    logged at DEBUG: neither the instance's UID nor the results' reach a log line."""
    caplog.set_level(logging.DEBUG)
    url, sessions = sqlite_db
    source = make_dicom(SOURCE, tmp_path / "modality" / "a.dcm", syntax="explicit_le")
    ds = pydicom.dcmread(source)
    with running_listener(tmp_path / "inbox") as listener:
        assert store(listener.port, ds) == 0x0000
        assert listener.stager.release_quiet(force=True) == 1
    (received,) = (tmp_path / "inbox" / "dicom-MODALITY").rglob("*.dcm")
    image_id = score(sessions, received)
    settings = Settings(database_url=url, dicom_outbox=tmp_path / "outbox", model="default")
    with session_scope(sessions) as session:
        exports.queue_scored(session, [image_id], model_version="v1", settings=settings)
    assert send_due(sessions, settings, builder=NoGradCam(settings)).sent == 2
    with session_scope(sessions) as session:
        made = session.execute(select(DicomExport.sop_instance_uid)).scalars().all()
    assert caplog.records  # the run did log
    for uid in [ds.SOPInstanceUID, ds.StudyInstanceUID, *made]:
        assert uid not in caplog.text


def test_a_file_over_the_size_limit_fails_by_its_size_without_being_read(tmp_path: Path) -> None:
    """A DICOM file whose pixel data make it 1 MiB larger than the limit (sparse on disk): refused
    with its size as the reason, and pydicom never holds its bytes."""
    path = tmp_path / "huge.dcm"
    make_dicom(SOURCE, path, syntax="explicit_le")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    length = MAX_FILE_BYTES + 2**20
    with path.open("r+b") as fh:
        fh.seek(0, os.SEEK_END)
        fh.write(b"\xe0\x7f\x10\x00OB\x00\x00" + length.to_bytes(4, "little"))
        fh.truncate(fh.tell() + length)
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableImageError) as refused:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.reason == f"file too large: {path.stat().st_size} bytes (limit {MAX_FILE_BYTES})"
    assert peak < 16 * 2**20


# -- the listener ------------------------------------------------------------------------------


@contextlib.contextmanager
def running_listener(inbox: Path) -> Iterator[Listener]:
    """An in-process Listener on a free loopback port."""
    settings = Settings()  # the limits dicom-listen runs with by default
    listener = Listener(
        inbox,
        ae_title="SKINSCREEN",
        address="127.0.0.1",
        port=free_port(),
        allow=[],
        quiet_seconds=0.0,
        max_associations=settings.dicom_max_associations,
        acse_timeout=settings.dicom_acse_timeout,
        network_timeout=settings.dicom_network_timeout,
        max_store_bytes=settings.dicom_max_store_bytes,
    )
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


def store(port: int, ds: Any, *, raw: Path | None = None) -> int:
    """C-STORE `ds` (or the file `raw`, its data set bytes sent as they are) from AE MODALITY."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="SKINSCREEN")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(raw if raw is not None else ds)
        return int(status.Status)
    finally:
        assoc.release()


@pytest.fixture(scope="module")
def dicom_listen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real `dicom-listen` (defaults but a 300 kB size cap), with its /metrics."""
    tmp = tmp_path_factory.mktemp("listen")
    port, metrics = free_port(), free_port()
    process = Process(
        ["dicom-listen", "--inbox", str(tmp / "inbox"), "--port", str(port), "--address", "127.0.0.1"]
        + ["--allow", "MODALITY", "--no-send"],
        env=env_for(
            database_url=f"sqlite:///{tmp / 'db.sqlite'}", metrics_port=metrics, dicom_max_store_bytes=300_000
        ),
        log=tmp / "listen.log",
    )
    try:
        wait_for(lambda: "DICOM listener" in process.text(), timeout=300, what="dicom-listen to start")
        yield {"port": port, "metrics": metrics, "tmp": tmp}
    finally:
        process.stop()


def test_idle_tcp_connections_do_not_lock_modalities_out(dicom_listen: dict[str, Any]) -> None:
    """12 TCP connections that never ask for an association: a modality's C-ECHO is still answered
    within 5 s, and the listener drops each idle connection after its ACSE timeout (5 s)."""
    port = dicom_listen["port"]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(12)]
    opened = time.monotonic()
    try:
        time.sleep(0.5)  # each has its association thread by now
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(VERIFICATION)
        ae.acse_timeout = ae.network_timeout = 5
        start = time.monotonic()
        assoc = ae.associate("127.0.0.1", port, ae_title="SKINSCREEN")
        assert assoc.is_established
        status = assoc.send_c_echo()
        assoc.release()
        assert int(status.Status) == 0x0000
        assert time.monotonic() - start < 5
        for conn in idle:
            with contextlib.suppress(ConnectionResetError):  # closed, or reset: dropped either way
                assert conn.recv(1) == b""
        assert time.monotonic() - opened < 5 + 3
    finally:
        for conn in idle:
            conn.close()


def test_data_the_listener_cannot_parse_is_answered_0xC000(dicom_listen: dict[str, Any]) -> None:
    """A C-STORE whose data set bytes are not a data set (file meta intact, then random bytes)."""
    tmp = dicom_listen["tmp"]
    ds = pydicom.dcmread(make_dicom(SOURCE, tmp / "good.dcm", syntax="explicit_le"))
    raw = tmp / "garbage.dcm"
    with raw.open("wb") as fh:
        fh.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fh, ds.file_meta)
        fh.write(os.urandom(4000))
    before = set((tmp / "inbox").rglob("*.dcm"))
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # pynetdicom sends the file's bytes without parsing them
    try:
        assert store(dicom_listen["port"], ds, raw=raw) == 0xC000
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
    time.sleep(0.2)
    assert set((tmp / "inbox").rglob("*.dcm")) == before  # nothing staged


def test_an_instance_above_the_size_cap_is_refused_0xA700(dicom_listen: dict[str, Any]) -> None:
    tmp = dicom_listen["tmp"]
    ds = pydicom.dcmread(make_dicom(SOURCE, tmp / "big.dcm", syntax="explicit_le"))
    ds.add_new(0x00091010, "OB", os.urandom(400_000))  # a private element: 400 kB over the 300 kB cap
    before = set((tmp / "inbox").rglob("*.dcm"))
    assert store(dicom_listen["port"], ds) == 0xA700
    assert set((tmp / "inbox").rglob("*.dcm")) == before


def test_the_listener_counters_appear_in_its_metrics(dicom_listen: dict[str, Any]) -> None:
    """One photograph stored, one CT refused: /metrics (prometheus_client's parser) counts both."""
    tmp = dicom_listen["tmp"]

    def counters() -> dict[str, float]:
        url = f"http://127.0.0.1:{dicom_listen['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            if family.name == "skinscreen_dicom_instances":
                out.update({s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")})
        return out

    def released_more() -> dict[str, float] | None:
        now = counters()
        return now if now["released"] > before["released"] else None

    before = counters()
    assert set(before) == {"received", "refused", "released"}
    photo = pydicom.dcmread(make_dicom(SOURCE, tmp / "photo.dcm", syntax="explicit_le"))
    ct = pydicom.dcmread(make_dicom(SOURCE, tmp / "ct.dcm", syntax="explicit_le", sop_class=CT_IMAGE_SOP))
    assert store(dicom_listen["port"], photo) == 0x0000
    assert store(dicom_listen["port"], ct) == 0x0122
    after = wait_for(released_more, timeout=30, what="the study released into the inbox")
    assert after["received"] - before["received"] == 1
    assert after["refused"] - before["refused"] == 1
    assert after["released"] - before["released"] == 1
