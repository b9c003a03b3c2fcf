"""Results for DICOM files as hospitals make them: attributes missing, names in several character
sets, files made by dcmtk's img2dcm and GDCM's gdcmimg. Each result passes dciodvfy and Orthanc
files it in the source's own study (Orthanc's study id hashes Patient ID and Study Instance UID)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from skinscreen.db.tables import ExportState
from skinscreen.dicomnet import results
from skinscreen.dicomnet.sender import _Built, _quiet, _to_peer
from tests.conftest import IN_CI
from tests.dicomnet.hospital_files import DROPPED, NAMES, tool_files, variants
from tests.orthanc import Orthanc

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"
TOOLS = ("/usr/bin/dciodvfy", "/usr/bin/img2dcm", "/usr/bin/gdcmimg")

pytestmark = pytest.mark.skipif(
    not all(Path(t).exists() for t in TOOLS) and not IN_CI,
    reason="dicom3tools, dcmtk and GDCM's tools are not installed (.ci/install-extra installs them)",
)


def dciodvfy_errors(path: Path) -> list[str]:
    done = subprocess.run(
        ["/usr/bin/dciodvfy", str(path)], capture_output=True, text=True, errors="replace", timeout=60
    )
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def build_both(source_path: Path) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    facts = results.ResultFacts(
        model_version="hospital-test",
        probability=0.8125,
        threshold=0.5,
        flagged=True,
        operating_point="test threshold",
        sop_instance_uid=str(generate_uid()),
    )
    overlay = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    with _quiet():
        source = results.read_source(source_path)
        sr = results.build_sr(source, facts)
        sc = results.build_sc(source, overlay, replace(facts, sop_instance_uid=str(generate_uid())))
    return sr, sc


def test_results_of_files_as_hospitals_make_them_pass_dciodvfy_and_join_their_study_in_orthanc(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    sources = {**variants(SOURCE, tmp_path / "sources"), **tool_files(SOURCE, tmp_path / "sources")}
    assert len(sources) == len(DROPPED) + len(NAMES) + 2
    assert all("Modality" not in pydicom.dcmread(sources[t]) for t in ("img2dcm", "gdcmimg"))
    built: list[_Built] = []
    made_from: dict[str, str] = {}
    (tmp_path / "results").mkdir()
    for name, path in sorted(sources.items()):
        for kind, ds in zip(("sr", "sc"), build_both(path), strict=True):
            out = tmp_path / "results" / f"{name}-{kind}.dcm"
            out.write_bytes(results.encode(ds))
            assert dciodvfy_errors(out) == [], (name, kind)
            built.append(_Built(len(built) + 1, ds))
            made_from[str(ds.SOPInstanceUID)] = name

    outcomes = _to_peer(orthanc.destination, "SKINSCREEN", built)
    assert {state for state, _ in outcomes.values()} == {ExportState.sent}, outcomes
    for name, path in sources.items():
        if name != "without_SeriesInstanceUID":  # Orthanc refuses a file without one
            orthanc.upload(path)  # the source, as the PACS holds it
    stored = {i["tags"]["SOPInstanceUID"]: i for i in orthanc.instances()}
    assert set(made_from) <= set(stored)
    for sop, name in made_from.items():
        result, source = stored[sop], pydicom.dcmread(sources[name])
        tags = result["tags"]
        assert tags["StudyInstanceUID"] == source.StudyInstanceUID, name
        if name != "without_SeriesInstanceUID":
            assert result["study"] == stored[source.SOPInstanceUID]["study"], name
            # Orthanc decodes each file's own character set: the same name comes out of both.
            assert tags.get("PatientName", "") == stored[source.SOPInstanceUID]["tags"].get("PatientName", "")
        assert tags["SeriesInstanceUID"] != source.get("SeriesInstanceUID"), name
