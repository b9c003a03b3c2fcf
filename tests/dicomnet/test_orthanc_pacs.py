"""Files made by dcmtk's img2dcm and GDCM's gdcmimg (Secondary Captures without Modality) and one
complete photograph, sent with dcmtk's storescu to `skinscreen dicom-listen`, scored, and their
results sent by C-STORE to Orthanc: its REST API shows one SR and one Secondary Capture per source
instance in the source's own study, and each result passes dciodvfy."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import select

from skinscreen.config import Settings
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import DicomExport, ExportState
from skinscreen.dicomnet.sender import ResultBuilder, send_due
from skinscreen.runner import run_embedded
from tests.conftest import IN_CI
from tests.dicom_factory import make_dicom
from tests.dicomnet.hospital_files import tool_files
from tests.dicomnet.test_hospital_files import dciodvfy_errors
from tests.orthanc import Orthanc, free_port
from tests.worker.pipeline import Process, env_for, wait_for

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
TOOLS = ("/usr/bin/storescu", "/usr/bin/dciodvfy", "/usr/bin/img2dcm", "/usr/bin/gdcmimg")

pytestmark = pytest.mark.skipif(
    not all(Path(t).exists() for t in TOOLS) and not IN_CI,
    reason="dcmtk, dicom3tools and GDCM's tools are not installed (.ci/install-extra installs them)",
)


def storescu(port: int, options: list[str], files: list[Path]) -> None:
    peer = ["-aet", "MODALITY", "-aec", "SKINSCREEN", "127.0.0.1", str(port)]
    command = ["/usr/bin/storescu", *options, *peer]
    done = subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def image_refs(ds: Any) -> set[str]:
    out: set[str] = set()
    for item in ds.get("ContentSequence", []):
        if item.ValueType == "IMAGE":
            out.add(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
        out |= image_refs(item)
    return out


@pytest.mark.timeout(1800)  # a busy 2-core machine: the tiny model alone can take minutes to build
def test_files_made_by_dcmtk_and_gdcm_sent_to_dicom_listen_give_one_sr_and_one_sc_each_in_orthanc(
    tmp_path: Path, tiny_model: Path, orthanc: Orthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = tmp_path / "modality"
    jpeg_files = [*tool_files(SOURCE, made / "1").values(), *tool_files(SOURCE, made / "2").values()]
    photo = make_dicom(SOURCE, made / "photo.dcm", syntax="explicit_le")
    sources = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in [*jpeg_files, photo]}
    assert len(sources) == 5
    assert sum("Modality" not in pydicom.dcmread(p) for p in sources.values()) == 4

    inbox, port = tmp_path / "inbox", free_port()
    values = {
        "database_url": f"sqlite:///{tmp_path / 'skinscreen.db'}",
        "model": str(tiny_model),
        "dicom_destination": orthanc.destination,
        "dicom_quiet_seconds": 1.0,
        "export_backoff": 0.2,
        "export_backoff_max": 0.5,
        "heatmap_dir": str(tmp_path / "heatmaps"),
        "audit_fraction": 0.0,  # no case held for a blinded audit (test_security.py covers that)
    }
    for key, value in values.items():  # the scoring hook reads the settings from the environment
        monkeypatch.setenv(f"SKINSCREEN_{key.upper()}", str(value))
    listener = Process(
        ["dicom-listen", "--inbox", str(inbox), "--port", str(port), "--address", "127.0.0.1"]
        + ["--allow", "MODALITY", "--no-send"],
        env=env_for(**values),
        log=tmp_path / "listen.log",
    )
    try:
        wait_for(lambda: "DICOM listener" in listener.text(), timeout=400, what="dicom-listen to start")
        storescu(port, ["-R", "-xy"], jpeg_files)  # JPEG Baseline, as the tools wrote them
        storescu(port, ["-R"], [photo])
        wait_for(
            lambda: len(list((inbox / "dicom-MODALITY").rglob("*.dcm"))) == 5,
            timeout=60,
            what="the 5 instances in the inbox",
        )
    finally:
        listener.stop()

    settings = Settings()
    summary = run_embedded([inbox], settings=settings, once=True, progress=False)
    assert (summary.counts.scored, summary.counts.failed) == (5, 0)
    for path in sources.values():
        orthanc.upload(path)  # the sources, as the PACS holds them
    sessions = make_session_factory(make_engine(settings.database_url))
    builder = ResultBuilder(settings)

    def all_sent() -> bool:
        send_due(sessions, settings, builder=builder)
        with session_scope(sessions) as db:
            states = db.execute(select(DicomExport.state)).scalars().all()
        return states.count(ExportState.sent) == 10

    wait_for(all_sent, timeout=300, what="10 results sent to Orthanc")

    # Each source has a study of its own: Orthanc holds it with the source, one SR and one SC.
    stored = orthanc.instances()
    assert len(stored) == 15
    study_of_source = {
        i["study"]: i["tags"]["SOPInstanceUID"] for i in stored if i["tags"]["SOPInstanceUID"] in sources
    }
    assert len(study_of_source) == 5
    results: dict[str, list[str]] = {study: [] for study in study_of_source}
    for instance in stored:
        if instance["tags"]["SOPInstanceUID"] in sources:
            continue
        path = orthanc.file(instance["id"], tmp_path / f"{instance['id']}.dcm")
        assert dciodvfy_errors(path) == [], instance["tags"]["SOPClassUID"]
        result = pydicom.dcmread(path)
        results[instance["study"]].append(str(result.SOPClassUID))
        if result.SOPClassUID == SR_CLASS:
            assert image_refs(result) == {study_of_source[instance["study"]]}
    assert all(sorted(classes) == sorted([SR_CLASS, SC_CLASS]) for classes in results.values()), results
