"""The DICOM network against dcmtk and dicom3tools: storescu/echoscu send, storescp plays the PACS.

One scenario, in order (each step needs the one before): a modality sends 10 photographs in 4
transfer syntaxes and 2 studies to `skinscreen dicom-listen`; a CT image and an unknown AE title
are refused; the embedded runner scores the 10 once; with the PACS down the 20 results stay
pending; once it is up they arrive (one SR and one Secondary Capture per image), pass dciodvfy
and say what the database says; a verdict sends a VERIFIED SR; a PACS that cannot store leaves
the next result failed with its status, shown by `skinscreen exports`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import generate_uid
from sqlalchemy import select

from skinscreen.cli import cli
from skinscreen.config import Settings
from skinscreen.db import accounts, verdicts
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import DicomExport, ExportState, Image, Prediction, Role, Verdict
from skinscreen.dicomnet.sender import ResultBuilder, send_due
from skinscreen.runner import run_embedded
from tests.conftest import IN_CI
from tests.dicom_factory import CT_IMAGE_SOP, make_dicom
from tests.worker.pipeline import Process, env_for, wait_for

# Debian's dcmtk and dicom3tools, by absolute path: pynetdicom installs Python tools of the same names
# (storescu, echoscu) into the virtual environment, which comes first on PATH, and the point here is
# to talk to an independent implementation.
SYSTEM_BIN = Path("/usr/bin")


def tool(name: str) -> str:
    return str(SYSTEM_BIN / name)


pytestmark = pytest.mark.skipif(
    not all((SYSTEM_BIN / t).exists() for t in ("storescu", "storescp", "echoscu", "dciodvfy"))
    and not IN_CI,  # in CI the tools are installed by .ci/install-extra: missing ones must fail
    reason="dcmtk and dicom3tools are not installed (.ci/install-extra installs them)",
)

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
# (file stem, factory syntax, storescu option that proposes it, study)
FILES = [
    *[(f"a{i}", "explicit_le", None, "A") for i in range(4)],
    *[(f"b{i}", "implicit_le", None, "B") for i in range(2)],
    ("a4", "jpeg_baseline_ybr", "-xy", "A"),
    ("b2", "jpeg_baseline_ybr", "-xy", "B"),
    ("a5", "rle", "-xr", "A"),
    ("b3", "jpeg2000", "-xv", "B"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dcmtk(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool(name), *args], capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def storescp(port: int, folder: Path) -> Iterator[None]:
    """dcmtk's storescp as the PACS (AE title PACS) on `port`, storing into `folder`."""
    pacs = subprocess.Popen(
        [tool("storescp"), "-aet", "PACS", "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        pacs.terminate()
        pacs.wait(timeout=30)


def make_sources(folder: Path) -> dict[str, list[Path]]:
    """The 10 files grouped by the storescu option they need; studies A and B set by hand."""
    studies = {s: generate_uid(entropy_srcs=["skinscreen-test-study", s]) for s in ("A", "B")}
    groups: dict[str, list[Path]] = {}
    for stem, syntax, option, study in FILES:
        path = make_dicom(SOURCE, folder / f"{stem}.dcm", syntax=syntax)
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = studies[study]
        ds.save_as(path, enforce_file_format=True)
        groups.setdefault(option or "", []).append(path)
    return groups


def dciodvfy_errors(path: Path) -> list[str]:
    done = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def content_items(ds: Any) -> list[Any]:
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out += content_items(item)
    return out


def sent_all(sessions: Any, settings: Settings, builder: ResultBuilder, count: int) -> bool:
    """One send pass; True once `count` exports are sent."""
    send_due(sessions, settings, builder=builder)
    with session_scope(sessions) as session:
        states = session.execute(select(DicomExport.state)).scalars().all()
    return states.count(ExportState.sent) == count


def pacs_objects(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]


@pytest.fixture
def network(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    inbox = tmp_path / "inbox"
    db = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    listen_port, pacs_port = free_port(), free_port()
    values = {
        "database_url": db,
        "model": str(tiny_model),
        "dicom_destination": f"PACS@127.0.0.1:{pacs_port}",
        "dicom_quiet_seconds": 1.0,
        "export_backoff": 0.2,
        "export_backoff_max": 0.5,
        "heatmap_dir": str(tmp_path / "heatmaps"),
        "settle_seconds": 0.2,
        "audit_fraction": 0.0,  # no case held for a blinded audit (test_security.py covers that)
    }
    for key, value in values.items():  # the scoring hook reads the settings from the environment
        monkeypatch.setenv(f"SKINSCREEN_{key.upper()}", str(value))
    listener = Process(
        ["dicom-listen", "--inbox", str(inbox), "--port", str(listen_port), "--address", "127.0.0.1"]
        + ["--allow", "MODALITY", "--no-send"],
        env=env_for(**values),
        log=tmp_path / "listen.log",
    )
    try:
        wait_for(lambda: "DICOM listener" in listener.text(), timeout=400, what="dicom-listen to start")
        yield {
            "inbox": inbox,
            "port": listen_port,
            "pacs_port": pacs_port,
            "settings": Settings(),
            "listener": listener,
            "tmp": tmp_path,
        }
    finally:
        listener.stop()


@pytest.mark.timeout(1800)  # a busy 2-core machine: the tiny model alone can take minutes to build
def test_receive_score_and_send_results_back(network: dict[str, Any], tmp_path: Path) -> None:
    port, settings = str(network["port"]), network["settings"]
    groups = make_sources(tmp_path / "modality")
    sources = {pydicom.dcmread(p).SOPInstanceUID: p for paths in groups.values() for p in paths}
    assert len(sources) == 10

    assert dcmtk("echoscu", "-aet", "MODALITY", "-aec", "SKINSCREEN", "127.0.0.1", port).returncode == 0
    for option, paths in groups.items():
        args = ["storescu", "-R", *([option] if option else []), "-aet", "MODALITY", "-aec", "SKINSCREEN"]
        done = dcmtk(*args, "127.0.0.1", port, *map(str, paths))
        assert done.returncode == 0, done.stderr
    ct = make_dicom(SOURCE, tmp_path / "modality" / "ct.dcm", syntax="explicit_le", sop_class=CT_IMAGE_SOP)
    refused = dcmtk(
        "storescu", "-v", "-R", "-aet", "MODALITY", "-aec", "SKINSCREEN", "127.0.0.1", port, str(ct)
    )
    assert "Refused: SOPClassNotSupported" in refused.stdout + refused.stderr
    stranger = dcmtk("storescu", "-R", "-aet", "STRANGER", "-aec", "SKINSCREEN", "127.0.0.1", port, str(ct))
    assert stranger.returncode != 0
    assert "Calling AE Title Not Recognized" in stranger.stdout + stranger.stderr

    # The studies reach inbox/<calling AE>/<study date>/ after the quiet time, complete.
    batch = network["inbox"] / "dicom-MODALITY" / "20240115"
    wait_for(lambda: len(list(batch.glob("*.dcm"))) == 10, timeout=60, what="the 10 instances in the inbox")
    assert not list(network["inbox"].rglob("*.part"))

    summary = run_embedded([network["inbox"]], settings=settings, once=True, progress=False)
    assert (summary.counts.new, summary.counts.scored, summary.counts.failed) == (10, 10, 0)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        predictions = {
            sop: (version, prob)
            for sop, version, prob in session.execute(
                select(Image.sop_uid, Prediction.model_version, Prediction.probability).join(Prediction)
            )
        }
    assert set(predictions) == set(sources)  # each scored once

    # The PACS is down: nothing is lost, everything waits.
    builder = ResultBuilder(settings)
    down = send_due(sessions, settings, builder=builder)
    assert (down.sent, down.failed, down.pending) == (0, 0, 20)
    with session_scope(sessions) as session:
        rows = session.execute(select(DicomExport)).scalars().all()
        assert {r.state for r in rows} == {ExportState.pending}
        assert all("unreachable" in (r.last_error or "") for r in rows)

    pacs_dir = tmp_path / "pacs"
    pacs_dir.mkdir()
    with storescp(network["pacs_port"], pacs_dir):
        # Each pass sends what is due; the backoff of 0.2-0.5 s makes the rest due soon after.
        wait_for(lambda: sent_all(sessions, settings, builder, 20), timeout=120, what="20 results sent")
        assert len(pacs_objects(pacs_dir)) == 20
        received = pacs_objects(pacs_dir)
        srs = [d for d in received if d.SOPClassUID == SR_CLASS]
        scs = [d for d in received if d.SOPClassUID == SC_CLASS]
        assert len(srs) == len(scs) == 10
        for path in sorted(pacs_dir.iterdir()):
            assert dciodvfy_errors(path) == [], path.name
        for sr in srs:
            refs = {
                i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                for i in content_items(sr)
                if i.ValueType == "IMAGE"
            }
            (source_uid,) = refs
            source = pydicom.dcmread(sources[source_uid])
            version, probability = predictions[source_uid]
            assert sr.StudyInstanceUID == source.StudyInstanceUID
            assert sr.SeriesInstanceUID != source.SeriesInstanceUID
            assert sr.PatientID == source.PatientID and sr.PatientName == source.PatientName
            assert sr.VerificationFlag == "UNVERIFIED"
            numbers = {
                i.ConceptNameCodeSequence[0].CodeMeaning: i.MeasuredValueSequence[0].NumericValue
                for i in content_items(sr)
                if i.ValueType == "NUM"
            }
            assert float(numbers["Probability of cancer"]) == pytest.approx(probability, abs=1e-6)
            air = sr.ContributingEquipmentSequence[-1]
            assert air.PurposeOfReferenceCodeSequence[0].CodeMeaning == "Processing Algorithm"
            assert air.SoftwareVersions[0] == version and "DeviceUID" in air
        assert {sc.StudyInstanceUID for sc in scs} == {
            pydicom.dcmread(p).StudyInstanceUID for p in sources.values()
        }
        assert all(sc.BurnedInAnnotation == "YES" for sc in scs)

        # A reviewer's verdict: a VERIFIED SR follows, naming its predecessor.
        first = srs[0]
        (source_uid,) = {
            i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for i in content_items(first)
            if i.ValueType == "IMAGE"
        }
        with session_scope(sessions) as session:
            account = accounts.add_account(session, name="derm", role=Role.reviewer, password_hash="x")
            image_id = session.execute(select(Image.id).where(Image.sop_uid == source_uid)).scalar_one()
            verdicts.add_review(
                session, image_id=image_id, account_id=account.id, verdict=Verdict.benign, note=None
            )
        assert send_due(sessions, settings, builder=builder).sent == 1
        wait_for(lambda: len(pacs_objects(pacs_dir)) == 21, timeout=30, what="the VERIFIED SR")
        (verified,) = [d for d in pacs_objects(pacs_dir) if d.get("VerificationFlag") == "VERIFIED"]
        assert (
            verified.PredecessorDocumentsSequence[0]
            .ReferencedSeriesSequence[0]
            .ReferencedSOPSequence[0]
            .ReferencedSOPInstanceUID
            == first.SOPInstanceUID
        )
        assert verified.StudyInstanceUID == first.StudyInstanceUID
        assert "Benign" in {
            i.ConceptCodeSequence[0].CodeMeaning for i in content_items(verified) if i.ValueType == "CODE"
        }
        assert (
            dciodvfy_errors(
                next(
                    p
                    for p in pacs_dir.iterdir()
                    if pydicom.dcmread(p).SOPInstanceUID == verified.SOPInstanceUID
                )
            )
            == []
        )

        # A PACS that cannot store: the next result fails with its status, and `exports` shows it.
        shutil.rmtree(pacs_dir)
        with session_scope(sessions) as session:
            verdicts.add_review(
                session, image_id=image_id, account_id=account.id, verdict=Verdict.malignant, note=None
            )
        refused = send_due(sessions, settings, builder=builder)
        assert (refused.sent, refused.failed) == (0, 1)
    listed = CliRunner().invoke(cli, ["exports", "--state", "failed", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert "peer status 0xA700" in listed.output
    engine.dispose()


def test_an_object_pynetdicom_cannot_encode_fails_alone_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """dcmtk's storescp as the PACS: one result that cannot be encoded is recorded as failed with
    a reason, the other object of the same pass is still sent, and no log line quotes the value."""
    from skinscreen.dicomnet.sender import _Built, _to_peer

    good = pydicom.dcmread(make_dicom(SOURCE, tmp_path / "good.dcm", syntax="explicit_le"))
    bad = pydicom.dcmread(make_dicom(SOURCE, tmp_path / "bad.dcm", syntax="explicit_le"))
    bad.add_new(0x00280010, "US", "not a number")  # Rows: text where the encoder needs an integer
    port = free_port()
    pacs_dir = tmp_path / "pacs"
    pacs_dir.mkdir()
    with storescp(port, pacs_dir):
        wait_for(lambda: _accepts(port), timeout=30, what="storescp to listen")
        out = _to_peer(f"PACS@127.0.0.1:{port}", "SKINSCREEN", [_Built(1, bad), _Built(2, good)])
        wait_for(lambda: len(list(pacs_dir.iterdir())) == 1, timeout=30, what="the good object")
    assert out[2] == (ExportState.sent, None)
    state, reason = out[1]
    assert state == ExportState.failed and reason is not None and "could not be encoded" in reason
    assert "Doe" not in reason and "PID" not in reason
    assert "not a number" not in caplog.text  # pynetdicom's encoder quotes the element's value


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
