"""DICOM files as hospitals make them: one source made into variants that lack attributes the standard
calls mandatory, or carry names in several character sets, plus the files dcmtk and GDCM make.

Each variant is a real file whose UIDs derive from its name (so results of two variants never share
a SOP instance) and whose study is its own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from tests.dicom_factory import make_dicom

# Attributes hospitals' files lack, each dropped alone from an otherwise complete source.
DROPPED = (
    "Modality",
    "StudyDate",
    "StudyTime",
    "SeriesInstanceUID",
    "PatientID",
    "PatientName",
    "StudyID",
    "AccessionNumber",
    "SpecificCharacterSet",
)
# (variant, Specific Character Set, patient's name): the name as the character set spells it.
NAMES = (
    ("latin1", "ISO_IR 100", "Müller^Jürgen^Ødegård"),
    ("utf8", "ISO_IR 192", "Ωμέγα^Σοφία=山田^太郎"),
    ("cyrillic", "ISO_IR 144", "Иванов^Пётр"),
    ("jis", ["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("undeclared_latin1", None, "Müller^Jürgen"),  # latin-1 bytes with no character set declared
)


def _complete(src_jpeg: Path, dst: Path) -> pydicom.Dataset:
    make_dicom(src_jpeg, dst, syntax="explicit_le")
    ds = pydicom.dcmread(dst)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["hospital-study", dst.stem])
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyTime = "103000"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC1"
    ds.ReferringPhysicianName = ""
    ds.PatientSex = "F"
    return ds


def variants(src_jpeg: Path, folder: Path) -> dict[str, Path]:
    """Variant name -> file: `without_<Keyword>` for each of DROPPED, `name_<charset>` for NAMES."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for keyword in DROPPED:
        path = folder / f"without_{keyword}.dcm"
        ds = _complete(src_jpeg, path)
        delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
        out[path.stem] = path
    for name, charset, patient in NAMES:
        path = folder / f"name_{name}.dcm"
        ds = _complete(src_jpeg, path)
        if charset is None:
            del ds.SpecificCharacterSet
            ds.save_as(path, enforce_file_format=True)
            raw = path.read_bytes().replace(b"Doe^Jane", patient.encode("latin-1")[:8])
            path.write_bytes(raw)  # same length: the element's length field stays right
        else:
            ds.SpecificCharacterSet = charset
            ds.PatientName = patient
            ds.save_as(path, enforce_file_format=True)
        out[path.stem] = path
    return out


def tool_files(src_jpeg: Path, folder: Path) -> dict[str, Path]:
    """Secondary Captures made by dcmtk's img2dcm and GDCM's gdcmimg from the JPEG: no Modality,
    no patient, empty or missing study attributes, JPEG Baseline."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, command in (
        ("img2dcm", ["/usr/bin/img2dcm", str(src_jpeg)]),
        ("gdcmimg", ["/usr/bin/gdcmimg", str(src_jpeg)]),
    ):
        if not Path(command[0]).exists():
            continue
        path = folder / f"{name}.dcm"
        subprocess.run([*command, str(path)], check=True, capture_output=True, timeout=60)
        out[name] = path
    return out
