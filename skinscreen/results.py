"""Result types shared by every layer: what reading a file kept and what scoring it gave.

A leaf: it imports nothing of the package, so the database layer can store a result without
importing the model layer that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DicomInfo:
    """Identifiers and context kept from a DICOM file (no patient identifiers); each field is an
    `image` column of the same name, so nothing read here is dropped on the way to the table."""

    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    sop_class_uid: str | None = None
    body_site: str | None = None
    acquisition_date: str | None = None


@dataclass(frozen=True)
class FileScore:
    """A file's probability and flag with the threshold that made it, or the reason it has none.

    This is the one result shape, from the decoder to the prediction table and the CLI rows.
    """

    path: Path
    probability: float | None
    flagged: bool | None
    threshold: float | None
    reason: str | None = None
    format: str | None = None
    dicom: DicomInfo | None = None
