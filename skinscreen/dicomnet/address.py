"""DICOM addresses and AE titles: `AE@host:port` destinations and safe folder names for calling AEs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.uid import UID

_AE_CHARS = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # printable ASCII but backslash (PS3.5 AE)


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def valid_ae_title(title: str) -> bool:
    """1-16 printable ASCII characters (no backslash), not only spaces."""
    return bool(_AE_CHARS.fullmatch(title)) and bool(title.strip())


def parse_destination(text: str) -> Destination:
    """`AE@host:port` -> Destination; ValueError says which part is wrong."""
    ae, at, rest = text.strip().rpartition("@")
    if not at or not ae:
        raise ValueError("a DICOM destination is AE@host:port, e.g. PACS@10.0.0.5:104")
    if not valid_ae_title(ae):
        raise ValueError("the AE title must be 1-16 printable ASCII characters without a backslash")
    host, colon, port = rest.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a DICOM destination needs host:port after the @, with a port 1-65535")
    return Destination(ae.strip(), host, int(port))


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
