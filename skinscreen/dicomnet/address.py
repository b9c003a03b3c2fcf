"""DICOM addresses and AE titles: `AE@host:port` destinations and safe folder names for calling AEs.

The destination syntax lives in `skinscreen.config`, which validates SKINSCREEN_DICOM_DESTINATION and,
being a leaf, imports nothing of the package; it is re-exported here for the network code.
"""

from __future__ import annotations

import re

from pydicom.uid import UID

from skinscreen.config import Destination, parse_destination, valid_ae_title

__all__ = ["Destination", "folder_name", "parse_destination", "study_folder", "valid_ae_title"]


def folder_name(ae_title: str) -> str:
    """A calling AE title as one safe folder name (the site): no separators, no leading dot."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", ae_title.strip())
    return name.strip("_") or "UNKNOWN_AE"


def study_folder(study_uid: str) -> str:
    """A Study Instance UID as a folder name: itself when it is a valid UID, else `unknown-study`.

    The UID comes from a received or dropped file, so it is untrusted: `../..` or `/` must not
    choose where a file is written.
    """
    return study_uid if UID(study_uid).is_valid else "unknown-study"
