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


NETWORK_SITE_PREFIX = "dicom-"
"""Every site made from a calling AE title starts with this, so a sender on the network cannot name
itself after a folder site (`hospital-a`) and have its images filed, scored and calibrated as that
site's: folder sites are made by whoever can write into the inbox, network sites by anyone who can
open a connection."""


def network_site(ae_title: str) -> str:
    """The site (inbox folder) of images received from `ae_title`: `dicom-<safe folder name>`."""
    return NETWORK_SITE_PREFIX + folder_name(ae_title)


def study_folder(study_uid: str) -> str:
    """A Study Instance UID as a folder name: itself when it is a valid UID, else `unknown-study`.

    The UID comes from a received or dropped file, so it is untrusted: `../..` or `/` must not
    choose where a file is written.
    """
    return study_uid if UID(study_uid).is_valid else "unknown-study"
